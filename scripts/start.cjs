// `npm start`: builds first when dist/ is missing or older than src/, then serves.
// CommonJS, and synchronous up to the hand-over, so that bin.cjs still sizes
// libuv's threadpool before anything starts it (see src/cli/threadpool.cts).
'use strict'
const { execFileSync } = require('node:child_process')
const { existsSync, readdirSync, statSync } = require('node:fs')
const { join } = require('node:path')

const root = join(__dirname, '..')
const entry = join(root, 'dist', 'cli', 'bin.cjs')

function newest (dir) {
  let t = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs)
  }
  return t
}

if (!existsSync(entry) || newest(join(root, 'src')) > statSync(entry).mtimeMs) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  if (!existsSync(tsc)) {
    console.error('dist/ is missing or stale and TypeScript is not installed: run `npm install` (with dev dependencies) first')
    process.exit(1)
  }
  console.error('building (dist/ is missing or stale)...')
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' })
}

process.argv.splice(2, 0, ...(process.argv.length > 2 ? [] : ['serve']))
require(entry)
