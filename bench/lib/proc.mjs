// Child processes for the benchmark: every server under test and the load
// generator run in their own process (own event loop), pinned with taskset
// when it exists. Talks to them over the IPC channel.
import { execFileSync, spawn } from 'node:child_process'
import { openSync, closeSync, readFileSync, readdirSync, existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'

let tasksetPath = null
for (const p of ['/usr/bin/taskset', '/bin/taskset', '/usr/local/bin/taskset']) {
  if (existsSync(p)) {
    tasksetPath = p
    break
  }
}

export const CORES = availableParallelism()
/** Pinning needs taskset and at least two cores. */
export const PINNING = tasksetPath !== null && CORES >= 2
/** Load generator core, server core, and "all cores". */
export const CPU = {
  load: '0',
  server: String(Math.min(1, CORES - 1)),
  all: `0-${CORES - 1}`
}

const live = new Set()

/** Kills whatever is still running (exit path, signals). */
export function killAll () {
  for (const c of live) {
    try { process.kill(c.pid, 'SIGKILL') } catch {}
  }
  live.clear()
}

/** Re-pins every thread of a running process. */
export function pin (pid, cpus) {
  if (!PINNING) return
  execFileSync(tasksetPath, ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
}

const TICK_MS = 10 // USER_HZ is 100 on Linux

/** CPU time (user + system) of a process and all its threads so far, in ms; null when unreadable. */
export function cpuMsOf (pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * TICK_MS
  } catch {
    return null
  }
}

/** CPU ms so far of every process whose name is one of `names` (PostgreSQL backends, Redis): pid -> { name, ms }. */
export function cpuSnapshot (names) {
  const want = new Set(names)
  const out = new Map()
  for (const d of readdirSync('/proc')) {
    if (d.charCodeAt(0) < 48 || d.charCodeAt(0) > 57) continue
    try {
      const text = readFileSync(`/proc/${d}/stat`, 'utf8')
      const name = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'))
      if (!want.has(name)) continue
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
      out.set(d, { name, ms: (Number(f[11]) + Number(f[12])) * TICK_MS })
    } catch {}
  }
  return out
}

/** CPU ms spent between two snapshots, per process name (processes that exited in between are not counted). */
export function cpuDelta (before, after, names) {
  const out = Object.fromEntries(names.map(n => [n, 0]))
  for (const [pid, v] of after) out[v.name] += Math.max(0, v.ms - (before.get(pid)?.ms ?? 0))
  return out
}

/** VmRSS of a process in bytes, from /proc. */
export function rssOf (pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? null : Number(m[1]) * 1024
  } catch {
    return null
  }
}

/**
 * Starts `node [nodeArgs] script` (under taskset -c cpus when pinning is
 * available) with an IPC channel; stdout/stderr go to logFile, or nowhere
 * when logFile is null.
 */
export function startChild (script, { name, cpus = null, nodeArgs = [], env = {}, logFile = null }) {
  const out = logFile === null ? 'ignore' : openSync(logFile, 'a')
  const node = [...nodeArgs, script]
  const useTaskset = PINNING && cpus !== null
  const child = spawn(useTaskset ? tasksetPath : process.execPath, useTaskset ? ['-c', cpus, process.execPath, ...node] : node, {
    stdio: ['ignore', out, out, 'ipc'],
    env: { ...process.env, ...env }
  })
  if (typeof out === 'number') closeSync(out)
  live.add(child)
  let seq = 0
  const pending = new Map()
  let exited = false
  let exitInfo = null
  const exitPromise = new Promise(resolve => {
    child.on('exit', (code, signal) => {
      exited = true
      exitInfo = { code, signal }
      live.delete(child)
      for (const { reject } of pending.values()) reject(new Error(`${name} exited (code ${code}, signal ${signal})${logFile === null ? '' : `; see ${logFile}`}`))
      pending.clear()
      resolve(exitInfo)
    })
  })
  child.on('message', msg => {
    const p = pending.get(msg.id)
    if (p === undefined) return
    pending.delete(msg.id)
    if (msg.error !== undefined) p.reject(new Error(`${name}: ${msg.error}`))
    else p.resolve(msg.result)
  })
  return {
    name,
    pid: child.pid,
    get exited () { return exited },
    /** Sends one command and waits for its answer. */
    call (cmd, args = {}, timeoutMs = 600_000) {
      if (exited) return Promise.reject(new Error(`${name} is not running (${JSON.stringify(exitInfo)})`))
      const id = ++seq
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id)
          reject(new Error(`${name}: ${cmd} timed out after ${timeoutMs} ms`))
        }, timeoutMs)
        pending.set(id, {
          resolve: v => { clearTimeout(timer); resolve(v) },
          reject: e => { clearTimeout(timer); reject(e) }
        })
        child.send({ id, cmd, ...args })
      })
    },
    /** Asks the child to stop cleanly (profiles get written), SIGKILL after a grace period. */
    async stop (graceMs = 15_000) {
      if (exited) return exitInfo
      const timer = setTimeout(() => { try { child.kill('SIGKILL') } catch {} }, graceMs)
      try {
        child.send({ id: ++seq, cmd: 'stop' })
      } catch {
        child.kill('SIGKILL')
      }
      const info = await exitPromise
      clearTimeout(timer)
      return info
    },
    rss () { return rssOf(child.pid) }
  }
}

export function logPath (dir, name) {
  return join(dir, `${name}.log`)
}
