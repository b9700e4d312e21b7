import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import semver from 'semver'
import { parse as parseYaml } from 'yaml'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')

interface Instruction { op: string, args: string, line: number }
interface Stage { name: string, base: string, instructions: Instruction[] }

/** Dockerfile -> global ARGs and stages; joins `\` continuations, drops comments and parser directives. */
function parseDockerfile (text: string): { globals: Instruction[], stages: Stage[] } {
  const instructions: Instruction[] = []
  let pending = ''
  let start = 0
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim()
    if (pending === '' && (line === '' || line.startsWith('#'))) continue
    if (pending !== '' && line.startsWith('#')) continue
    if (pending === '') start = i + 1
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `
      continue
    }
    const full = `${pending}${line}`.replace(/\s+/g, ' ').trim()
    pending = ''
    const m = /^(\S+)\s*(.*)$/.exec(full)
    if (m !== null) instructions.push({ op: (m[1] ?? '').toUpperCase(), args: m[2] ?? '', line: start })
  }
  const globals: Instruction[] = []
  const stages: Stage[] = []
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)
      stages.push({ base: m?.[1] ?? '', name: m?.[2] ?? String(stages.length), instructions: [] })
    } else {
      const stage = stages.at(-1)
      if (stage === undefined) globals.push(ins)
      else stage.instructions.push(ins)
    }
  }
  return { globals, stages }
}

function ops (stage: Stage, op: string): Instruction[] {
  return stage.instructions.filter(i => i.op === op)
}

/** An exec-form (JSON array) argument list, or null for shell form. */
function execForm (args: string): string[] | null {
  try {
    const v: unknown = JSON.parse(args)
    return Array.isArray(v) && v.every(x => typeof x === 'string') ? v : null
  } catch {
    return null
  }
}

interface Copy { from: string | null, sources: string[], dest: string }

function copies (stage: Stage): Copy[] {
  return ops(stage, 'COPY').map(ins => {
    const words = ins.args.split(' ')
    const flags = words.filter(w => w.startsWith('--'))
    const paths = words.filter(w => !w.startsWith('--'))
    const from = flags.find(f => f.startsWith('--from='))?.slice('--from='.length) ?? null
    return { from, sources: paths.slice(0, -1), dest: paths.at(-1) ?? '' }
  })
}

const DOCKERFILE = parseDockerfile(read('Dockerfile'))
const PKG = JSON.parse(read('package.json')) as { scripts: Record<string, string>, engines?: { node?: string } }
const FINAL = DOCKERFILE.stages.at(-1)
const BUILD = DOCKERFILE.stages.find(s => ops(s, 'RUN').some(r => /\bnpm run build\b/.test(r.args)))

t.test('multi-stage: a build stage that builds like CI, a runtime stage that only runs', async t => {
  t.ok(DOCKERFILE.stages.length >= 2, `${DOCKERFILE.stages.length} stages`)
  if (BUILD === undefined || FINAL === undefined) throw new Error('no build stage or no final stage')
  t.not(BUILD, FINAL, 'the build does not happen in the final stage')

  const runs = ops(BUILD, 'RUN').map(r => r.args)
  const ci = runs.findIndex(r => /\bnpm ci\b/.test(r))
  const build = runs.findIndex(r => /\bnpm run build\b/.test(r))
  t.ok(ci >= 0, 'npm ci')
  t.notMatch(runs[ci] ?? '', /--omit=dev|--production|--ignore-scripts/, 'npm ci installs dev dependencies (the compiler) and runs install scripts (bcrypt)')
  t.ok(build > ci, 'npm run build after npm ci')
  t.ok(runs.some((r, i) => i > build && /\bnpm prune\b.*--omit=dev/.test(r)), 'dev dependencies pruned after the build')
  t.notOk(ops(FINAL, 'RUN').some(r => /\bnpm (ci|install|i)\b/.test(r.args)), 'the runtime stage installs nothing from npm')

  t.equal(PKG.scripts.build, 'tsc -p tsconfig.build.json', 'package.json build is what the image runs')
  const copied = new Set(copies(BUILD).filter(c => c.from === null).flatMap(c => c.sources).map(s => s.replace(/\/$/, '')))
  const tsconfigs = [...(PKG.scripts.build ?? '').matchAll(/-p\s+(\S+)/g)].map(m => m[1] ?? '')
  for (const file of tsconfigs) {
    t.ok(copied.has(file), `${file} copied into the build stage`)
    const cfg = JSON.parse(read(file)) as { extends?: string, include?: string[] }
    if (cfg.extends !== undefined) t.ok(copied.has(cfg.extends.replace(/^\.\//, '')), `${cfg.extends} (extended) copied`)
    for (const dir of cfg.include ?? []) t.ok(copied.has(dir), `${dir} (compiled) copied`)
  }
  for (const file of ['package.json', 'package-lock.json', 'config']) t.ok(copied.has(file), `${file} copied`)
})

t.test('the runtime stage: production only, non-root, no healthcheck, the contract ports', async t => {
  if (FINAL === undefined || BUILD === undefined) throw new Error('no stages')
  const fromBuild = copies(FINAL).filter(c => c.from === BUILD.name)
  const dests = new Map(fromBuild.flatMap(c => c.sources.map(s => [s.replace(/^\/app\//, ''), c.dest.replace(/^\.\//, '').replace(/\/$/, '')])))
  t.same(Object.fromEntries(dests), { 'package.json': 'package.json', node_modules: 'node_modules', dist: 'dist', config: 'config' },
    'package.json, pruned node_modules, dist and config, side by side (dist/config/load.js reads ../../config/default.yaml)')
  t.notOk(copies(FINAL).some(c => c.from === null), 'nothing from the build context: only built output')

  const users = ops(FINAL, 'USER')
  const user = users.at(-1)?.args ?? ''
  t.ok(users.length > 0, 'USER set')
  t.match(user, /^\d+(:\d+)?$/, 'numeric, so Kubernetes runAsNonRoot can verify it')
  t.notMatch(user, /^(0|root)(:|$)/, 'not root')
  const values = parseYaml(read('helm/hg-auth-sidecar/values.yaml')) as { podSecurityContext?: { runAsUser?: number } }
  t.equal(Number(user.split(':')[0]), values.podSecurityContext?.runAsUser, 'the uid the Helm chart runs as')

  t.equal(DOCKERFILE.stages.flatMap(s => ops(s, 'HEALTHCHECK')).length, 0, 'no HEALTHCHECK: Kubernetes probes the ops port')

  const exposed = ops(FINAL, 'EXPOSE').flatMap(e => e.args.split(' ')).map(p => Number(p.split('/')[0]))
  const defaults = parseYaml(read('config/default.yaml')) as { server: { port: number, opsPort: number, adminPort: number } }
  t.same(exposed.sort(), [defaults.server.port, defaults.server.opsPort].sort(), 'EXPOSE the proxy and ops ports of config/default.yaml')
  t.same([defaults.server.port, defaults.server.opsPort], [8080, 9090])
  t.notOk(exposed.includes(defaults.server.adminPort), 'the admin port is not published')

  t.ok(ops(FINAL, 'ENV').some(e => /^NODE_ENV[= ]production$/.test(e.args)), 'NODE_ENV=production')
  const cmd = execForm(ops(FINAL, 'CMD').at(-1)?.args ?? '')
  t.same(cmd, ['node', 'dist/cli/bin.cjs', 'serve'], 'CMD runs the CLI serve command in exec form')
  const entry = execForm(ops(FINAL, 'ENTRYPOINT').at(-1)?.args ?? '[]')
  t.ok(entry === null || entry.length === 0 || /(^|\/)tini$/.test(entry[0] ?? ''), 'ENTRYPOINT, if any, is tini (signals forwarded, zombies reaped)')
  t.ok(ops(FINAL, 'WORKDIR').at(-1)?.args === '/app', 'WORKDIR /app')
})

interface LockPackage { dev?: boolean, engines?: { node?: string } }
const LOCK = JSON.parse(read('package-lock.json')) as { packages: Record<string, LockPackage> }
const NODE_IMAGE = DOCKERFILE.globals.find(g => g.op === 'ARG' && g.args.startsWith('NODE_IMAGE='))?.args.slice('NODE_IMAGE='.length) ?? ''

t.test('the image runs a Node LTS line that every production dependency accepts', async t => {
  const bases = DOCKERFILE.stages.map(s => s.base.replace(/^\$\{NODE_IMAGE\}$/, NODE_IMAGE))
  const majors = new Set(bases.map(b => /^node:(\d+)[-.@]/.exec(b)?.[1]))
  t.same([...majors].length, 1, `one Node major for every stage: ${bases.join(', ')}`)
  const major = Number([...majors][0])
  t.ok(major % 2 === 0 || major >= 27, `node ${major} is an LTS line (even, or 27+ where every release becomes LTS)`)
  t.match(NODE_IMAGE, /-slim(@|$)/, 'a slim variant')
  // The newest patch of that major stands for the image: every engines range of what ships must accept it.
  const version = `${major}.999.0`
  t.ok(semver.satisfies(version, PKG.engines?.node ?? ''), `package.json engines ${PKG.engines?.node} accept ${major}`)
  const refused = Object.entries(LOCK.packages)
    .filter(([name, p]) => name !== '' && p.dev !== true && p.engines?.node !== undefined && !semver.satisfies(version, p.engines.node))
    .map(([name, p]) => `${name.replace(/^.*node_modules\//, '')} wants node ${p.engines?.node}`)
  t.same(refused, [], `no production dependency refuses node ${major} (npm ci warns EBADENGINE otherwise)`)
  t.notOk(semver.satisfies('20.999.0', LOCK.packages['node_modules/cookie']?.engines?.node ?? '*'), 'the check has teeth: cookie@2 refuses Node 20')
})

t.test('the build: npm cache mounted, no compiler toolchain, the CLI on PATH in the image', async t => {
  if (BUILD === undefined || FINAL === undefined) throw new Error('no stages')
  const ci = ops(BUILD, 'RUN').find(r => /\bnpm ci\b/.test(r.args))
  t.match(ci?.args, /^--mount=type=cache,target=\/root\/\.npm\b/, 'npm ci with a BuildKit cache mount on the npm cache (root in the build stage)')
  const installs = DOCKERFILE.stages.flatMap(s => ops(s, 'RUN')).map(r => r.args).filter(a => /apt-get install/.test(a)).join(' ')
  t.notMatch(installs, /\b(python3|make|g\+\+|gcc|build-essential)\b/, 'bcrypt ships prebuilds: no node-gyp toolchain')

  const pkgBin = (JSON.parse(read('package.json')) as { bin: Record<string, string> }).bin
  const link = /\bln -s (\S+) (\S+)/.exec(ops(FINAL, 'RUN').map(r => r.args).join(' && '))
  t.equal(link?.[2], '/usr/local/bin/hg-sidecar', 'hg-sidecar linked into /usr/local/bin, on PATH')
  t.equal(link?.[1], `/app/${pkgBin['hg-sidecar'] ?? ''}`, 'to the package.json bin entry')
  t.ok(ops(BUILD, 'RUN').some(r => /chmod 0?755 dist\/cli\/bin\.cjs/.test(r.args)), 'made executable (tsc writes 0644)')
  t.match(readFileSync(join(ROOT, 'src', 'cli', 'bin.cts'), 'utf8'), /^#!\/usr\/bin\/env node\n/, 'with a shebang tsc keeps')
})

t.test('no secret is baked into the image', async t => {
  const secretish = /DATABASE_URL|REDIS_URL|ADMIN_TOKEN|PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|hg_(pat|key)_/i
  for (const ins of [...DOCKERFILE.globals, ...DOCKERFILE.stages.flatMap(s => s.instructions)]) {
    if (ins.op === 'ENV' || ins.op === 'ARG' || ins.op === 'LABEL') t.notMatch(ins.args, secretish, `line ${ins.line}: ${ins.op} ${ins.args}`)
    if (ins.op === 'COPY' || ins.op === 'ADD') t.notMatch(ins.args, /\.env\b|\.npmrc|id_rsa|\.pem\b/, `line ${ins.line}: ${ins.op} copies no credential file`)
  }
  t.notMatch(read('Dockerfile'), /hg_(pat|key)_[0-9a-f]{48}/)
})

/** .dockerignore semantics (moby/patternmatcher): last matching pattern wins; a match on a parent directory counts. */
function dockerignore (text: string): (path: string) => boolean {
  const rules = text.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#')).map(l => {
    const negate = l.startsWith('!')
    const pattern = (negate ? l.slice(1) : l).trim().replace(/^\/+|\/+$/g, '')
    const source = pattern.split('/').map(seg => seg === '**'
      ? '.*'
      : seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('/').replace(/\.\*\//g, '(?:.*/)?')
    return { negate, re: new RegExp(`^${source}$`) }
  })
  return path => {
    const parts = path.split('/')
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'))
    let ignored = false
    for (const { negate, re } of rules) {
      if (candidates.some(c => re.test(c))) ignored = !negate
    }
    return ignored
  }
}

t.test('.dockerignore: the context holds only what the build copies', async t => {
  const ignored = dockerignore(read('.dockerignore'))
  for (const p of ['node_modules', 'node_modules/bcrypt/package.json', '.git', '.git/HEAD', 'dist/cli/index.js', '.data/pg/PG_VERSION',
    '.env', '.env.local', 'src/.env', 'test/proxy/proxy.test.ts', 'helm/hg-auth-sidecar/values.yaml', 'coverage/lcov.info', '.tap/processinfo/x.json', 'bench/results/run.json']) {
    t.ok(ignored(p), `${p} excluded`)
  }
  if (BUILD === undefined) throw new Error('no build stage')
  const sources = copies(BUILD).filter(c => c.from === null).flatMap(c => c.sources)
  for (const p of [...sources, 'src/cli/index.ts', 'src/cli/bin.cts', 'src/threadpool.cts', 'config/default.yaml']) t.notOk(ignored(p.replace(/\/$/, '')), `${p} reaches the build`)
})
