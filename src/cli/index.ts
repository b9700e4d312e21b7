// The CLI as an ES module. The executable is bin.cjs, which sizes libuv's
// threadpool first (threadpool.cts); run this file directly and bcrypt gets
// libuv's default pool of 4 threads instead.
import { main } from './program.js'

const code = await main(process.argv)
if (code !== 0) process.exit(code)
