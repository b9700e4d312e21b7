import { spawn, type ChildProcess } from 'node:child_process'
import { CLI } from './stack.js'

/** A running `hg-sidecar` (the built executable) with its stdout and stderr captured together. */
export interface Running {
  child: ChildProcess
  out: () => string
  exited: Promise<number | null>
}

export interface SpawnCliOptions {
  cwd: string
  env: NodeJS.ProcessEnv
  /**
   * tap adds NODE_OPTIONS=--import=<its process tracker> to every child; that ES
   * module starts libuv's threadpool before bin.cjs can size it. `env -u` drops it.
   */
  dropNodeOptions?: boolean
}

export function spawnCli (args: string[], opts: SpawnCliOptions): Running {
  const [cmd, argv] = opts.dropNodeOptions === true
    ? ['env', ['-u', 'NODE_OPTIONS', process.execPath, CLI, ...args]]
    : [process.execPath, [CLI, ...args]]
  const child = spawn(cmd, argv, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { out += c.toString() })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  return { child, out: () => out, exited }
}

/** Waits until the output matches (the banner, a line); throws if the process exits first. */
export async function waitFor (r: Running, re: RegExp, ms = 60_000): Promise<RegExpExecArray> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    const m = re.exec(r.out())
    if (m !== null) return m
    if (r.child.exitCode !== null) throw new Error(`exited early:\n${r.out()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for ${re}:\n${r.out()}`)
}

export async function stop (r: Running): Promise<number | null> {
  r.child.kill('SIGTERM')
  return r.exited
}
