#!/usr/bin/env node
// The graft command; the code is built into dist/ by `npm run build` (npm ci runs it).
import { availableParallelism } from 'node:os';

// sharp decodes on libuv's pool, 4 threads unless told: a worker on a many-core GPU node would
// decode 4 photos at a time. One thread per core, set before anything starts the pool.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism()));
await import('../dist/main.js');
