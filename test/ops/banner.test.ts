import { spawn } from 'node:child_process'
import t from 'tap'
import { request } from '../helpers/http.js'
import { CLI, ROOT, startStack } from '../helpers/stack.js'

interface Served { stdout: string, stderr: string }

/** `hg-sidecar serve` with stdout and stderr kept apart (pipes: not a TTY), stopped once ready. */
async function serveOnce (env: NodeJS.ProcessEnv): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const exited = new Promise<void>(resolve => child.on('exit', () => resolve()))
  try {
    let listening: Record<string, unknown> | undefined
    for (let i = 0; i < 300 && listening === undefined && child.exitCode === null; i++) {
      await new Promise(resolve => setTimeout(resolve, 100))
      listening = stdout.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>).find(r => r.msg === 'hg-auth-sidecar listening')
    }
    if (listening === undefined) throw new Error(`never listened:\n${stdout}\n${stderr}`)
    const res = await request(Number(listening.opsPort), '/readyz')
    if (res.statusCode !== 200) throw new Error(`not ready: ${res.text}`)
  } finally {
    child.kill('SIGTERM')
    await exited
  }
  return { stdout, stderr }
}

const jsonLines = (text: string): Array<Record<string, unknown>> => text.split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, unknown>)

t.test('the start banner never mixes into the JSON log on stdout', async t => {
  const stack = await startStack(t, { listen: false })
  await stack.sidecar.close()
  const base = { ...stack.cliEnv(), UPSTREAM_URL: stack.upstream.url, HOST: '127.0.0.1', PORT: '0', OPS_PORT: '0', ADMIN_PORT: '0', LOG_LEVEL: 'info' }

  await t.test('NODE_ENV=production: one JSON line says where it listens, no text anywhere', async t => {
    const { stdout, stderr } = await serveOnce({ ...base, NODE_ENV: 'production' })
    const lines = jsonLines(stdout)
    t.ok(lines.length > 0, 'every stdout line parses as JSON')
    const listening = lines.find(l => l.msg === 'hg-auth-sidecar listening')
    t.match(listening, { port: Number, opsPort: Number, adminPort: Number, upstream: new URL(stack.upstream.url).origin, embeddedDatabase: false, redis: true })
    t.notMatch(stderr, /hg-auth-sidecar is running/, 'no text banner on stderr either')
  })

  await t.test('not production, stdout not a terminal: the text banner goes to stderr', async t => {
    const { stdout, stderr } = await serveOnce(base)
    t.ok(jsonLines(stdout).some(l => l.msg === 'hg-auth-sidecar listening'), 'stdout is JSON only')
    t.match(stderr, /hg-auth-sidecar is running\n\s+proxy\s+http:\/\/127\.0\.0\.1:\d+/)
  })
})
