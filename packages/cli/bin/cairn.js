#!/usr/bin/env -S node --max-semi-space-size=32
// The installed `cairn` command; the code is compiled to dist/ by `npm run build`. The node
// flags on the first line are @cairn/gateway's GATEWAY_NODE_FLAGS, for `cairn gateway` (a
// test keeps the two the same).
import "../dist/src/bin.js";
