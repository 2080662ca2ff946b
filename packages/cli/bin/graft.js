#!/usr/bin/env node
// The graft command; the code is built into dist/ by `npm run build` (npm ci runs it).
import "../dist/main.js";
