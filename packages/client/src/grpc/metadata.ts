// Request id and W3C trace context across gRPC hops: a client interceptor that writes them
// into the call's metadata, and a wrapper that runs server handlers in the context they carry.
import {
  childTrace,
  contextFromHeaders,
  currentContext,
  formatTraceparent,
  newRequestId,
  runWithContext,
} from "@cairn/runtime";
import { InterceptingCall, type Interceptor, type Metadata, type UntypedServiceImplementation } from "@grpc/grpc-js";

/** Adds `x-request-id` and a child `traceparent` of the current context to every call's metadata. */
export function contextInterceptor(): Interceptor {
  return (options, nextCall) => {
    // Read when the call is made, which is where the caller's context is current.
    const ctx = currentContext();
    return new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (metadata.get("x-request-id").length === 0) metadata.set("x-request-id", ctx?.requestId ?? newRequestId());
        if (metadata.get("traceparent").length === 0) {
          const trace = childTrace(ctx?.trace);
          metadata.set("traceparent", formatTraceparent(trace));
          if (trace.state !== undefined) metadata.set("tracestate", trace.state);
        }
        next(metadata, listener);
      },
    });
  };
}

function headersOf(metadata: Metadata): Record<string, string | undefined> {
  const text = (key: string) => {
    const v = metadata.get(key)[0];
    return typeof v === "string" ? v : undefined;
  };
  return { "x-request-id": text("x-request-id"), traceparent: text("traceparent"), tracestate: text("tracestate") };
}

/**
 * Wraps every handler of a service implementation so it runs in the request context its call's
 * metadata carries (or a new one); clients called from the handler pass it on.
 */
export function withGrpcContext<T extends UntypedServiceImplementation>(implementation: T): T {
  const wrapped: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    wrapped[name] = ((call: { metadata: Metadata }, ...rest: unknown[]) =>
      runWithContext(contextFromHeaders(headersOf(call.metadata)), () =>
        (handler as (...args: unknown[]) => unknown)(call, ...rest),
      )) as never;
  }
  return wrapped as T;
}
