import { execFile } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/** The first executable of this name on PATH, or null. */
export function onPath (name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    try {
      accessSync(join(dir, name), constants.X_OK)
      return join(dir, name)
    } catch {}
  }
  return null
}

/** Why promtool tests skip where it is missing (Debian's `prometheus` package has it; .ci/run installs it). */
export const NO_PROMTOOL = 'promtool is not installed (apt-get install prometheus): skipped'

export interface Run { code: number, stdout: string, stderr: string }

export function run (cmd: string, args: string[], opts: { input?: string, cwd?: string, timeout?: number } = {}): Promise<Run> {
  return new Promise(resolve => {
    const child = execFile(cmd, args, { cwd: opts.cwd, timeout: opts.timeout ?? 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, stderr: err !== null && stderr === '' ? err.message : stderr })
    })
    if (opts.input !== undefined) child.stdin?.end(opts.input)
  })
}

/** `promtool check metrics` on an exposition; null when promtool is not installed. */
export async function checkMetrics (exposition: string): Promise<Run | null> {
  const promtool = onPath('promtool')
  if (promtool === null) return null
  return run(promtool, ['check', 'metrics'], { input: exposition })
}
