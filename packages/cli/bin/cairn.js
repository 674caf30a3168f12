#!/usr/bin/env node
// The installed `cairn` command; the code is compiled to dist/ by `npm run build`.
import "../dist/src/bin.js";
