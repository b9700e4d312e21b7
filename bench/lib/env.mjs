// Imported first by run.mjs: libuv's threadpool runs bcrypt (seeding mints
// thousands of hashes), so size it before anything uses it, as the CLI does.
import { availableParallelism } from 'node:os'

if (process.env.UV_THREADPOOL_SIZE === undefined) process.env.UV_THREADPOOL_SIZE = String(Math.max(4, availableParallelism()))
