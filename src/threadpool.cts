// libuv's threadpool runs every bcrypt compare, so its size is the cold path's
// parallelism: one thread per CPU the process may use unless the operator set
// UV_THREADPOOL_SIZE. "The CPUs the process may use" are the cores, or fewer under
// a cgroup CPU limit (a container's `resources.limits.cpu`): Node 20's
// os.availableParallelism() reports the node's cores whatever the limit. The bcrypt
// pool's default concurrency is the same count (auth/bcrypt-pool.ts).
//
// libuv reads UV_THREADPOOL_SIZE once, when the pool first starts, and Node's
// ES module loader starts it to read the first module file. Setting the
// variable from an ES module is therefore too late (the pool already has
// libuv's default of 4 threads). This file is CommonJS, and requires no other
// file of the project, so that bin.cjs can apply it before any ES module loads.
import fs = require('node:fs')
import os = require('node:os')
import path = require('node:path')

type Read = (file: string) => string | null

function readFile (file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return null
  }
}

/** `cpu.max` (cgroup v2): "max 100000" or "150000 100000" -> CPUs, null when unlimited or unreadable. */
function v2Limit (text: string | null): number | null {
  const [quota, period] = (text ?? '').trim().split(/\s+/)
  const q = Number(quota)
  const p = Number(period)
  return quota === 'max' || !(q > 0) || !(p > 0) ? null : q / p
}

/** cpu.cfs_quota_us / cpu.cfs_period_us (cgroup v1): -1 = unlimited. */
function v1Limit (quota: string | null, period: string | null): number | null {
  const q = Number((quota ?? '').trim())
  const p = Number((period ?? '').trim())
  return !(q > 0) || !(p > 0) ? null : q / p
}

/** The directory and its ancestors up to the mount point, deepest first. */
function upTo (mount: string, rel: string): string[] {
  const dirs: string[] = []
  let dir = path.posix.join(mount, rel).replace(/\/+$/, '')
  while (dir.startsWith(mount)) {
    dirs.push(dir)
    if (dir === mount) break
    dir = path.posix.dirname(dir)
  }
  return dirs
}

/**
 * The CPU limit of this process's cgroup (the lowest along its ancestors), in
 * CPUs (1.5 for a quota of 150 ms per 100 ms), or null when there is none.
 * Inside a container the cgroup namespace usually makes /sys/fs/cgroup the
 * container's own cgroup: the path in /proc/self/cgroup is then "/".
 */
function cgroupCpuLimit (read: Read = readFile): number | null {
  const self = read('/proc/self/cgroup') ?? ''
  const limits: number[] = []
  for (const line of self.split('\n')) {
    const [, controllers = '', rel = ''] = line.split(':')
    if (line.startsWith('0::')) {
      for (const dir of upTo('/sys/fs/cgroup', rel)) {
        const l = v2Limit(read(`${dir}/cpu.max`))
        if (l !== null) limits.push(l)
      }
    } else if (controllers.split(',').includes('cpu')) {
      for (const mount of ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct']) {
        for (const dir of upTo(mount, rel)) {
          const l = v1Limit(read(`${dir}/cpu.cfs_quota_us`), read(`${dir}/cpu.cfs_period_us`))
          if (l !== null) limits.push(l)
        }
      }
    }
  }
  // A v2 container whose /proc/self/cgroup names a host path that is not mounted here.
  if (limits.length === 0) {
    const l = v2Limit(read('/sys/fs/cgroup/cpu.max'))
    if (l !== null) limits.push(l)
  }
  return limits.length === 0 ? null : Math.min(...limits)
}

/** Whole CPUs the process may use: min(cores, the cgroup limit rounded up), at least 1. */
function availableCpus (read: Read = readFile, cores: number = os.availableParallelism()): number {
  const limit = cgroupCpuLimit(read)
  return Math.max(1, limit === null ? cores : Math.min(cores, Math.ceil(limit)))
}

/** libuv's own ceiling. */
const MAX_THREADS = 1024

/** One thread per CPU the process may use. */
function defaultThreadpoolSize (): number {
  return Math.min(MAX_THREADS, availableCpus())
}

/** Sets UV_THREADPOOL_SIZE to the CPUs when it is unset or empty; an operator's value is kept. Returns the value in effect. */
function sizeThreadpool (env: NodeJS.ProcessEnv = process.env): string {
  const set = env.UV_THREADPOOL_SIZE
  if (set === undefined || set.trim() === '') env.UV_THREADPOOL_SIZE = String(defaultThreadpoolSize())
  return env.UV_THREADPOOL_SIZE as string
}

export = { availableCpus, cgroupCpuLimit, defaultThreadpoolSize, sizeThreadpool }
