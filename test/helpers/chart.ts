import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { onPath } from './promtool.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const CHART = join(ROOT, 'helm', 'hg-auth-sidecar')
/**
 * ../shared/tools next to the repository: stand-ins for helm on machines without it.
 * HG_SHARED_TOOLS points elsewhere (a git worktree has no ../shared of its own).
 */
export const TOOLS = process.env.HG_SHARED_TOOLS ?? join(ROOT, '..', 'shared', 'tools')

export type Rendered = { ok: true, stdout: string, stderr: string } | { ok: false, message: string }

export interface Renderer {
  tool: 'helm' | 'chart-render'
  render(valuesFiles: string[]): Promise<Rendered>
}

export function run (cmd: string, args: string[], timeout: number): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile(cmd, args, { timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, stderr: err !== null && stderr === '' ? err.message : stderr })
    })
  })
}

/** A real `helm` when installed, else the chart-render stand-in, else the reason to skip. */
export async function findRenderer (): Promise<Renderer | string> {
  const helm = onPath('helm')
  const valuesArgs = (files: string[]): string[] => files.flatMap(f => ['-f', f])
  const wrap = async (p: Promise<{ code: number, stdout: string, stderr: string }>): Promise<Rendered> => {
    const r = await p
    return r.code === 0 ? { ok: true, stdout: r.stdout, stderr: r.stderr } : { ok: false, message: r.stderr }
  }
  if (helm !== null) {
    return {
      tool: 'helm',
      render: files => wrap(run(helm, ['template', 'release', CHART, '--namespace', 'default', '--kube-version', '1.30.0', ...valuesArgs(files)], 30_000))
    }
  }
  const build = join(TOOLS, 'chart-render', 'build.sh')
  if (!existsSync(build)) return `no helm on PATH and no ${build} (a fresh clone has no ../shared; HG_SHARED_TOOLS names another place): chart not rendered`
  // build.sh caches the binary under $TMPDIR/chart-render; the first build may install Go with apt.
  const built = await run('bash', [build], 100_000)
  const bin = built.stdout.trim().split('\n').at(-1) ?? ''
  if (built.code !== 0 || bin === '' || !existsSync(bin)) {
    return `no helm on PATH and chart-render did not build: ${built.stderr.trim().split('\n').slice(-3).join(' | ')}`
  }
  return {
    tool: 'chart-render',
    render: files => wrap(run(bin, [CHART, ...valuesArgs(files), '--name', 'release', '--namespace', 'default'], 30_000))
  }
}
