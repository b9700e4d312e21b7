// Preloaded (`node --require`) into every sidecar process of the benchmark, so
// that libuv's threadpool gets the size the hg-sidecar executable (dist/cli/bin.cjs)
// gives it: the bench measures what the CLI runs. `npm run bench` preloads it into
// run.mjs too (seeding mints thousands of hashes); run.mjs then puts the operator's
// own setting back, so that each child sizes its pool for itself (its own CPUs).
// It must be CommonJS: see src/threadpool.cts.
'use strict'
if (process.env.HG_BENCH_UV_OPERATOR === undefined) process.env.HG_BENCH_UV_OPERATOR = process.env.UV_THREADPOOL_SIZE ?? ''
require('../../dist/threadpool.cjs').sizeThreadpool()
