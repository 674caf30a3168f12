// The request context (request id, W3C trace context) the HTTP and gRPC clients pass on; it
// lives in @cairn/runtime so the framework integrations can set it without this package.
export {
  acceptRequestId,
  childTrace,
  contextFromHeaders,
  currentContext,
  formatTraceparent,
  newRequestId,
  parseTraceparent,
  type RequestContext,
  runWithContext,
  type TraceContext,
} from "@cairn/runtime";
