import { execFile } from 'node:child_process'
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import AjvModule from 'ajv'
import t from 'tap'
import { parse as parseYaml, parseAllDocuments, stringify } from 'yaml'
import { loadConfig } from '../../src/config/load.js'
import { ENV_KEYS } from '../../src/config/schema.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CHART = join(ROOT, 'helm', 'hg-auth-sidecar')
const TEMPLATES = join(CHART, 'templates')
// ../shared/tools next to the repository: stand-ins for helm on machines without it.
const TOOLS = join(ROOT, '..', 'shared', 'tools')
const MIN_VALUES = join(CHART, 'ci', 'test-values.yaml')

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonObject = { [key: string]: Json }

function isObject (v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function readYamlObject (file: string): JsonObject {
  const doc: unknown = parseYaml(readFileSync(file, 'utf8'))
  if (!isObject(doc)) throw new Error(`${file}: not a mapping`)
  return doc
}

/** Helm's coalescing of a values file over the chart's: objects merge, null deletes, the rest replaces. */
function mergeValues (base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const b = out[k]
    if (v === null) delete out[k]
    else out[k] = isObject(b) && isObject(v) ? mergeValues(b, v) : v
  }
  return out
}

const VALUES = readYamlObject(join(CHART, 'values.yaml'))
const SCHEMA: unknown = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8'))
const DEFAULTS = readYamlObject(join(ROOT, 'config', 'default.yaml'))

function at (obj: Json | undefined, ...path: string[]): Json | undefined {
  let cur = obj
  for (const p of path) cur = isObject(cur) ? cur[p] : undefined
  return cur
}

t.test('values.yaml satisfies values.schema.json; bad values are refused', async t => {
  const Ajv = AjvModule.default
  // strictRequired off: `required` in a sub-schema may name properties declared by its parent.
  const ajv = new Ajv({ strict: true, strictRequired: false, allowUnionTypes: true, allErrors: true })
  const validate = ajv.compile(SCHEMA as object)
  const check = (values: JsonObject): string => validate(values) ? '' : ajv.errorsText(validate.errors)

  t.equal(check(VALUES), '', 'values.yaml')
  t.equal(check(mergeValues(VALUES, readYamlObject(MIN_VALUES))), '', 'ci/test-values.yaml')
  const good: JsonObject[] = [
    { sidecar: { nativeSidecar: true }, serviceMonitor: { enabled: true, force: true, labels: { release: 'prom' } } },
    { podDisruptionBudget: { enabled: true, minAvailable: '50%', maxUnavailable: null } },
    { sidecar: { image: { digest: `sha256:${'ab'.repeat(32)}` }, extraEnv: [{ name: 'BCRYPT_COST', value: '12' }] } },
    { secrets: { existingSecret: 'scan-api-db', redisUrlKey: '', adminTokenKey: '' }, global: { anything: true } },
    { sidecar: { databasePooler: 'transaction', dbPoolSize: 2, redis: { sentinels: ['redis-sentinel:26379', '[fd00::1]:26379'], sentinelName: 'mymaster', tls: true } }, secrets: { migrateDatabaseUrlKey: 'MIGRATE_DATABASE_URL' } },
    { sidecar: { redis: { clusterNodes: ['redis-cluster-0.redis:6379'] } }, migrations: { job: { enabled: false } } }
  ]
  for (const over of good) t.equal(check(mergeValues(VALUES, over)), '', JSON.stringify(over))

  const bad: Array<[JsonObject, RegExp]> = [
    [{ replicas: 3 }, /must NOT have additional properties/],
    [{ sidecar: { nativeSidecar: 'yes' } }, /nativeSidecar must be boolean/],
    [{ sidecar: { ports: { http: 70000 } } }, /ports\/http must be <= 65535/],
    [{ sidecar: { logLevel: 'verbose' } }, /logLevel must be equal to one of the allowed values/],
    [{ sidecar: { image: { tag: 1.1 } } }, /image\/tag must be string/],
    [{ sidecar: { upstreamUrl: 'ftp://files' } }, /upstreamUrl must match pattern/],
    [{ sidecar: { readinessProbe: { httpGet: { path: '/' } } } }, /readinessProbe must NOT have additional properties/],
    [{ secrets: { databaseUrl: 'postgres://user:pw@db/hg' } }, /secrets must NOT have additional properties/],
    [{ config: { adminToken: 'not-a-real-token-0000' } }, /config\/adminToken must NOT be valid/],
    [{ config: { database: { url: 'postgres://user:pw@db/hg' } } }, /config\/database\/url must NOT be valid/],
    [{ config: { database: { migrateUrl: 'postgres://user:pw@db/hg' } } }, /config\/database\/migrateUrl must NOT be valid/],
    [{ config: { redis: { password: 'pw' } } }, /config\/redis\/password must NOT be valid/],
    [{ config: { redis: { sentinelPassword: 'pw' } } }, /config\/redis\/sentinelPassword must NOT be valid/],
    [{ podDisruptionBudget: { minAvailable: '50' } }, /minAvailable/],
    [{ serviceMonitor: { interval: '30' } }, /interval must match pattern/],
    [{ app: { port: 0 } }, /app\/port must be >= 1/],
    [{ app: { image: null } }, /app must have required property 'image'/],
    [{ sidecar: { databasePooler: 'session' } }, /databasePooler must be equal to one of the allowed values/],
    [{ sidecar: { redis: { sentinels: ['redis-sentinel'] } } }, /sentinels\/0 must match pattern/],
    [{ sidecar: { dbPoolSize: 0 } }, /dbPoolSize must be >= 1/],
    [{ migrations: { job: { enabled: 'yes' } } }, /enabled must be boolean/]
  ]
  for (const [over, re] of bad) t.match(check(mergeValues(VALUES, over)), re, JSON.stringify(over))
})

// --- what the templates read -------------------------------------------------------------------

interface ValueRef { file: string, path: string[] }

const ROOT_FIELDS = new Set(['Values', 'Release', 'Chart', 'Capabilities', 'Template', 'Files', 'Subcharts'])
const PURE_REF = /^(\$[A-Za-z0-9_]*)?((?:\.[A-Za-z_][A-Za-z0-9_]*)+)$/

/**
 * Every values path the templates read: `.Values.a.b` and `$.Values.a.b`, variables bound
 * to a values path (`$s := .Values.sidecar` then `$s.ports.http`), and field access on the
 * dot inside `with <values path>`. Define bodies are assumed to receive the root context.
 */
function valueRefs (file: string, text: string): ValueRef[] {
  type Dot = string[] | 'root' | 'unknown'
  interface Frame { dot: Dot, vars: Map<string, string[] | null> }
  const stack: Frame[] = [{ dot: 'root', vars: new Map() }]
  const refs: ValueRef[] = []
  const top = (): Frame => stack[stack.length - 1] as Frame
  const lookup = (name: string): string[] | null => {
    for (let i = stack.length - 1; i >= 0; i--) {
      const v = stack[i]?.vars.get(name)
      if (v !== undefined) return v
    }
    return null
  }
  // Resolves `.a.b`, `$.a.b`, `$v.a.b` against the current dot and variables; null = not values.
  const resolve = (variable: string | undefined, fields: string[]): string[] | null => {
    let base: Dot
    if (variable === '$') base = 'root'
    else if (variable !== undefined) {
      const v = lookup(variable)
      if (v === null) return null
      base = v
    } else base = top().dot
    if (base === 'unknown') return null
    if (base === 'root') return fields[0] === 'Values' && fields.length > 1 ? fields.slice(1) : null
    return [...base, ...fields]
  }

  for (const m of text.matchAll(/\{\{-?\s*([\s\S]*?)\s*-?\}\}/g)) {
    const body = (m[1] ?? '').replace(/"(?:[^"\\]|\\.)*"|`[^`]*`/g, '""')
    if (body.startsWith('/*')) continue
    const [keyword = '', ...rest] = body.split(/\s+/)
    const operand = rest.join(' ')

    for (const r of body.matchAll(/(?:(\$[A-Za-z0-9_]*)|(?<![\w)\]]))((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
      const variable = r[1]
      const fields = (r[2] ?? '').split('.').slice(1)
      if (variable === undefined && top().dot === 'root' && !ROOT_FIELDS.has(fields[0] ?? '')) {
        throw new Error(`${file}: .${fields.join('.')} on the root context`)
      }
      const path = resolve(variable, fields)
      if (path !== null) refs.push({ file, path })
    }

    const assign = /^(\$[A-Za-z0-9_]+)\s*:?=\s*(.+)$/.exec(body)
    if (assign !== null) {
      const rhs = PURE_REF.exec((assign[2] ?? '').trim())
      const path = rhs === null ? null : resolve(rhs[1] === '' ? undefined : rhs[1], (rhs[2] ?? '').split('.').slice(1))
      top().vars.set(assign[1] ?? '', path)
      continue
    }
    if (keyword === 'end') {
      stack.pop()
      if (stack.length === 0) throw new Error(`${file}: unbalanced {{ end }}`)
    } else if (keyword === 'with') {
      const ref = PURE_REF.exec(operand.trim())
      const path = ref === null ? null : resolve(ref[1] === '' ? undefined : ref[1], (ref[2] ?? '').split('.').slice(1))
      stack.push({ dot: path ?? 'unknown', vars: new Map() })
    } else if (keyword === 'range') {
      stack.push({ dot: 'unknown', vars: new Map() })
    } else if (keyword === 'define' || keyword === 'block') {
      stack.push({ dot: 'root', vars: new Map() })
    } else if (keyword === 'if') {
      stack.push({ dot: top().dot, vars: new Map() })
    }
  }
  if (stack.length !== 1) throw new Error(`${file}: unbalanced blocks`)
  return refs
}

function templateRefs (): ValueRef[] {
  return readdirSync(TEMPLATES).flatMap(f => valueRefs(f, readFileSync(join(TEMPLATES, f), 'utf8')))
}

// `config` is free-form: the sidecar validates it.
const FREE_FORM = new Set(['config'])

function pathExists (values: JsonObject, path: string[]): boolean {
  let cur: Json | undefined = values
  for (const p of path) {
    if (!isObject(cur) || !Object.hasOwn(cur, p)) return false
    if (cur === values && FREE_FORM.has(p)) return true
    cur = cur[p]
  }
  return true
}

function leafPaths (obj: JsonObject, prefix: string[] = []): string[][] {
  return Object.entries(obj).flatMap(([k, v]) => {
    const here = [...prefix, k]
    if (prefix.length === 0 && FREE_FORM.has(k)) return [here]
    return isObject(v) && Object.keys(v).length > 0 ? leafPaths(v, here) : [here]
  })
}

t.test('the template scanner follows variables and with-blocks', async t => {
  const refs = valueRefs('x', [
    '{{- $s := .Values.sidecar }}{{ $s.ports.http }}{{ $.Values.a.b }}',
    '{{- with .Values.app }}{{ .image.tag }}{{ with .env }}{{ toYaml . }}{{ end }}{{ end }}',
    '{{- define "y" }}{{- $s := .Values.other }}{{ $s.z }}{{- end }}{{ $s.after }}',
    '{{- range .Values.list }}{{ .name }}{{ end }}{{ printf ".Values.not.this" }}'
  ].join('\n')).map(r => r.path.join('.'))
  t.same(refs, ['sidecar', 'sidecar.ports.http', 'a.b', 'app', 'app.image.tag', 'app.env', 'other', 'other.z', 'sidecar.after', 'list'])
})

t.test('every values path a template reads is in values.yaml, and every value is read', async t => {
  const refs = templateRefs()
  t.ok(refs.length > 50, `found ${refs.length} references`)
  for (const ref of refs) {
    t.ok(pathExists(VALUES, ref.path), `${ref.file}: .Values.${ref.path.join('.')} is in values.yaml`)
  }
  const read = refs.map(r => r.path.join('.'))
  for (const leaf of leafPaths(VALUES)) {
    const key = leaf.join('.')
    const used = read.some(p => p === key || key.startsWith(`${p}.`))
    t.ok(used, `values.yaml: ${key} is read by a template`)
  }
})

// --- rendering -----------------------------------------------------------------------------------

type Rendered = { ok: true, stdout: string, stderr: string } | { ok: false, message: string }

interface Renderer {
  tool: 'helm' | 'chart-render'
  render(valuesFiles: string[]): Promise<Rendered>
}

function run (cmd: string, args: string[], timeout: number): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile(cmd, args, { timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, stderr: err !== null && stderr === '' ? err.message : stderr })
    })
  })
}

function onPath (name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    try {
      accessSync(join(dir, name), constants.X_OK)
      return join(dir, name)
    } catch {}
  }
  return null
}

/** A real `helm` when installed, else the chart-render stand-in, else the reason to skip. */
async function findRenderer (): Promise<Renderer | string> {
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
  if (!existsSync(build)) return `no helm on PATH and no ${build} (a fresh clone has no ../shared): chart not rendered`
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

interface EnvVar { name: string, value?: string, valueFrom?: { secretKeyRef?: { name: string, key: string, optional?: boolean } } }
interface Probe { httpGet?: { path: string, port: number | string } }
interface Container {
  name: string
  image: string
  restartPolicy?: string
  args?: string[]
  ports?: Array<{ name?: string, containerPort: number }>
  env?: EnvVar[]
  startupProbe?: Probe
  livenessProbe?: Probe
  readinessProbe?: Probe
  lifecycle?: { preStop?: { exec?: { command: string[] } } }
  securityContext?: { readOnlyRootFilesystem?: boolean, allowPrivilegeEscalation?: boolean, runAsNonRoot?: boolean, capabilities?: { drop?: string[] } }
  volumeMounts?: Array<{ name: string, mountPath: string, readOnly?: boolean }>
}
interface PodSpec {
  containers: Container[]
  initContainers?: Container[]
  terminationGracePeriodSeconds?: number
  serviceAccountName?: string
  automountServiceAccountToken?: boolean
  securityContext?: { runAsNonRoot?: boolean, runAsUser?: number, fsGroup?: number, seccompProfile?: { type: string } }
  volumes?: Array<{ name: string, emptyDir?: object, configMap?: { name: string } }>
}
interface Manifest {
  apiVersion: string
  kind: string
  metadata: { name: string, namespace?: string, labels?: Record<string, string>, annotations?: Record<string, string> }
  data?: Record<string, string>
  spec?: unknown
}
interface Deployment extends Manifest {
  spec: { template: { metadata: { labels: Record<string, string>, annotations?: Record<string, string> }, spec: PodSpec } }
}
interface Job extends Manifest {
  spec: { template: { metadata: { labels: Record<string, string> }, spec: PodSpec & { restartPolicy?: string } } }
}
interface Service extends Manifest {
  spec: { selector: Record<string, string>, ports: Array<{ name: string, port: number, targetPort: number | string }> }
}
interface ServiceMonitor extends Manifest {
  spec: { selector: { matchLabels: Record<string, string> }, endpoints: Array<{ port: string, path: string }> }
}
interface Pdb extends Manifest {
  spec: { minAvailable?: number | string, maxUnavailable?: number | string, selector: { matchLabels: Record<string, string> } }
}

function parseManifests (text: string): Manifest[] {
  return parseAllDocuments(text).map(d => d.toJS() as unknown).filter(isObject).map(d => d as unknown as Manifest)
}

function only<T extends Manifest> (docs: Manifest[], kind: string): T {
  const found = docs.filter(d => d.kind === kind)
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`)
  return found[0] as T
}

function container (list: Container[] | undefined, name: string): Container {
  const c = list?.find(x => x.name === name)
  if (c === undefined) throw new Error(`no container ${name}`)
  return c
}

function env (c: Container): Map<string, EnvVar> {
  return new Map((c.env ?? []).map(e => [e.name, e]))
}

function plainEnv (c: Container): Record<string, string> {
  return Object.fromEntries((c.env ?? []).flatMap(e => e.value === undefined ? [] : [[e.name, e.value]]))
}

function subset (small: Record<string, string>, big: Record<string, string> | undefined): boolean {
  return Object.entries(small).every(([k, v]) => big?.[k] === v)
}

t.test('rendered chart', async t => {
  const renderer = await findRenderer()
  if (typeof renderer === 'string') {
    t.skip(renderer, () => {})
    return
  }
  t.comment(`rendering with ${renderer.tool}`)
  const dir = mkdtempSync(join(tmpdir(), 'hg-chart-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  let n = 0
  const overlay = (values: JsonObject): string => {
    const f = join(dir, `values-${n++}.yaml`)
    writeFileSync(f, stringify(values))
    return f
  }
  const rendered: string[] = []
  const render = async (files: string[]): Promise<{ docs: Manifest[], stderr: string }> => {
    const r = await renderer.render(files)
    if (!r.ok) throw new Error(`${renderer.tool} failed: ${r.message}`)
    rendered.push(r.stdout)
    return { docs: parseManifests(r.stdout), stderr: r.stderr }
  }

  const minValues = mergeValues(VALUES, readYamlObject(MIN_VALUES))
  const sidecarName = String(at(VALUES, 'sidecar', 'name'))
  const appName = String(at(VALUES, 'app', 'name'))
  const opsPort = at(DEFAULTS, 'server', 'opsPort')
  const httpPort = at(DEFAULTS, 'server', 'port')

  await t.test('defaults plus the required values', async t => {
    const { docs } = await render([MIN_VALUES])
    t.same(docs.map(d => d.kind).sort(), ['ConfigMap', 'Deployment', 'Job', 'NetworkPolicy', 'Service', 'ServiceAccount'])
    const dep = only<Deployment>(docs, 'Deployment')
    const pod = dep.spec.template.spec
    t.same(pod.containers.map(c => c.name), [appName, sidecarName], 'the app and the sidecar, no init containers')
    t.equal(pod.initContainers, undefined)
    const app = container(pod.containers, appName)
    t.equal(app.image, 'registry.example.com/scan-api:1.4.2')
    const side = container(pod.containers, sidecarName)
    t.equal(side.restartPolicy, undefined)

    t.same(side.ports, [{ name: 'http', containerPort: httpPort, protocol: 'TCP' }, { name: 'ops', containerPort: opsPort, protocol: 'TCP' }],
      'container ports are the sidecar defaults from config/default.yaml')
    t.same(side.startupProbe?.httpGet, { path: '/healthz', port: opsPort })
    t.same(side.livenessProbe?.httpGet, { path: '/healthz', port: opsPort })
    t.same(side.readinessProbe?.httpGet, { path: '/readyz', port: opsPort })

    t.same(pod.securityContext, { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } })
    t.equal(side.securityContext?.readOnlyRootFilesystem, true)
    t.equal(side.securityContext?.allowPrivilegeEscalation, false)
    t.equal(side.securityContext?.runAsNonRoot, true)
    t.same(side.securityContext?.capabilities?.drop, ['ALL'])
    t.equal(app.securityContext?.allowPrivilegeEscalation, false)
    t.equal(pod.automountServiceAccountToken, false)

    const vars = env(side)
    t.same(vars.get('DATABASE_URL')?.valueFrom, { secretKeyRef: { name: 'hg-auth-sidecar-secrets', key: 'DATABASE_URL' } }, 'DATABASE_URL from the Secret, required')
    t.same(vars.get('REDIS_URL')?.valueFrom, { secretKeyRef: { name: 'hg-auth-sidecar-secrets', key: 'REDIS_URL', optional: true } })
    t.same(vars.get('ADMIN_TOKEN')?.valueFrom, { secretKeyRef: { name: 'hg-auth-sidecar-secrets', key: 'ADMIN_TOKEN', optional: true } })
    for (const name of ['DATABASE_URL', 'REDIS_URL', 'ADMIN_TOKEN']) t.equal(vars.get(name)?.value, undefined, `${name} has no literal value`)
    for (const name of vars.keys()) {
      t.ok(name === 'CONFIG_FILE' || Object.hasOwn(ENV_KEYS, name), `${name} is a variable the sidecar reads`)
    }
    const plain = plainEnv(side)
    t.equal(plain.UPSTREAM_URL, 'http://127.0.0.1:3000', 'upstream defaults to the app port on loopback')
    const grace = pod.terminationGracePeriodSeconds ?? 30
    const preStop = Number(side.lifecycle?.preStop?.exec?.command.at(-1) ?? 0)
    t.ok(grace * 1000 > Number(plain.SHUTDOWN_GRACE_MS) + preStop * 1000,
      `terminationGracePeriodSeconds ${grace} s covers preStop ${preStop} s + SHUTDOWN_GRACE_MS ${plain.SHUTDOWN_GRACE_MS}`)

    const cm = only<Manifest>(docs, 'ConfigMap')
    const configYaml = cm.data?.['config.yaml'] ?? ''
    t.same(parseYaml(configYaml), minValues.config, 'config.yaml is values.config')
    const configFile = plain.CONFIG_FILE ?? ''
    const mounts = new Map((side.volumeMounts ?? []).map(m => [m.name, m]))
    const volumes = new Map((pod.volumes ?? []).map(v => [v.name, v]))
    t.equal(mounts.get('config')?.mountPath, dirname(configFile), 'CONFIG_FILE lives in the config mount')
    t.equal(mounts.get('config')?.readOnly, true)
    t.equal(volumes.get('config')?.configMap?.name, cm.metadata.name)
    t.equal(mounts.get('tmp')?.mountPath, '/tmp')
    t.ok(volumes.get('tmp')?.emptyDir, '/tmp is an emptyDir')
    t.match(dep.spec.template.metadata.annotations?.['checksum/config'], /^[0-9a-f]{64}$/)

    // The sidecar accepts what the chart gives it: ConfigMap + plain env, loaded by its own loader.
    const cfgFile = join(dir, 'config.yaml')
    writeFileSync(cfgFile, configYaml)
    const cfg = loadConfig({ env: { ...plain, CONFIG_FILE: cfgFile } })
    t.equal(cfg.defaultDeny, true)
    t.equal(cfg.upstream.url, 'http://127.0.0.1:3000')
    t.equal(cfg.server.port, httpPort)
    t.equal(cfg.server.opsPort, opsPort)

    const svc = only<Service>(docs, 'Service')
    t.same(svc.spec.ports, [{ name: 'http', port: 80, targetPort: httpPort, protocol: 'TCP' }], 'only the proxy port, no ops port')
    t.ok(subset(svc.spec.selector, dep.spec.template.metadata.labels), 'the Service selects the pods')

    // Migrations run once per install or upgrade, before the pods roll; the pods do not.
    t.equal(plain.MIGRATE_ON_START, 'false')
    t.equal(plain.DATABASE_POOLER, 'none')
    t.equal(plain.DB_POOL_SIZE, '3')
    const job = only<Job>(docs, 'Job')
    t.equal(job.metadata.annotations?.['helm.sh/hook'], 'pre-install,pre-upgrade')
    t.notOk(subset(svc.spec.selector, job.spec.template.metadata.labels), 'the Service never selects the migration pod')
    const migrate = container(job.spec.template.spec.containers, 'migrate')
    t.equal(migrate.image, side.image, 'the sidecar\'s image')
    t.same(migrate.args, ['node', 'dist/cli/bin.cjs', 'migrate'])
    t.same(env(migrate).get('DATABASE_URL')?.valueFrom, vars.get('DATABASE_URL')?.valueFrom)
    t.equal(job.spec.template.spec.restartPolicy, 'Never')
    t.equal(job.spec.template.spec.serviceAccountName, undefined, 'not the chart\'s ServiceAccount: it does not exist yet before install')
    t.equal(migrate.securityContext?.readOnlyRootFilesystem, true)
  })

  await t.test('Sentinel, Cluster, a pooler and a separate migration URL', async t => {
    const { docs } = await render([MIN_VALUES, overlay({
      sidecar: { databasePooler: 'transaction', dbPoolSize: 2, redis: { sentinels: ['redis-sentinel-0.redis:26379', 'redis-sentinel-1.redis:26379'], sentinelName: 'mymaster', tls: true, sentinelTls: true } },
      secrets: { redisUrlKey: '', migrateDatabaseUrlKey: 'MIGRATE_DATABASE_URL', redisPasswordKey: 'REDIS_PASSWORD', redisSentinelPasswordKey: 'REDIS_SENTINEL_PASSWORD' }
    })])
    const side = container(only<Deployment>(docs, 'Deployment').spec.template.spec.containers, sidecarName)
    const vars = env(side)
    const plain = plainEnv(side)
    t.same({ pooler: plain.DATABASE_POOLER, pool: plain.DB_POOL_SIZE, sentinels: plain.REDIS_SENTINELS, name: plain.REDIS_SENTINEL_NAME, tls: plain.REDIS_TLS, sentinelTls: plain.REDIS_SENTINEL_TLS },
      { pooler: 'transaction', pool: '2', sentinels: 'redis-sentinel-0.redis:26379,redis-sentinel-1.redis:26379', name: 'mymaster', tls: 'true', sentinelTls: 'true' })
    for (const name of ['MIGRATE_DATABASE_URL', 'REDIS_PASSWORD', 'REDIS_SENTINEL_PASSWORD']) {
      t.same(vars.get(name)?.valueFrom, { secretKeyRef: { name: 'hg-auth-sidecar-secrets', key: name, optional: true } }, `${name} from the Secret`)
    }
    const cfg = loadConfig({ env: { ...plain, CONFIG_FILE: '', DATABASE_URL: 'postgres://db/hg', REDIS_PASSWORD: 'x' } })
    t.equal(cfg.redis.sentinelName, 'mymaster', 'the sidecar accepts the Sentinel settings')
    t.equal(cfg.database.pooler, 'transaction')
    const migrate = container(only<Job>(docs, 'Job').spec.template.spec.containers, 'migrate')
    t.same(env(migrate).get('MIGRATE_DATABASE_URL')?.valueFrom, vars.get('MIGRATE_DATABASE_URL')?.valueFrom, 'the Job migrates through MIGRATE_DATABASE_URL')
    t.equal(plainEnv(migrate).DATABASE_POOLER, 'transaction')

    const cluster = await render([MIN_VALUES, overlay({ sidecar: { redis: { clusterNodes: ['redis-0.redis:6379', 'redis-1.redis:6379'] } }, migrations: { job: { enabled: false } } })])
    const cplain = plainEnv(container(only<Deployment>(cluster.docs, 'Deployment').spec.template.spec.containers, sidecarName))
    t.equal(cplain.REDIS_CLUSTER_NODES, 'redis-0.redis:6379,redis-1.redis:6379')
    t.equal(cplain.REDIS_SENTINELS, undefined)
    t.notOk(cluster.docs.some(d => d.kind === 'Job'), 'no Job when disabled')
    t.equal(loadConfig({ env: { ...cplain, CONFIG_FILE: '' } }).redis.clusterNodes.length, 2)
  })

  await t.test('a changed config rolls the pods; other changes do not touch the checksum', async t => {
    const checksum = async (over: JsonObject): Promise<string> => {
      const { docs } = await render([MIN_VALUES, overlay(over)])
      return only<Deployment>(docs, 'Deployment').spec.template.metadata.annotations?.['checksum/config'] ?? ''
    }
    const base = await checksum({})
    t.not(await checksum({ config: { defaultDeny: false } }), base)
    t.equal(await checksum({ replicaCount: 5 }), base)
  })

  await t.test('nativeSidecar: the sidecar is a restartable init container', async t => {
    const { docs } = await render([MIN_VALUES, overlay({ sidecar: { nativeSidecar: true } })])
    const pod = only<Deployment>(docs, 'Deployment').spec.template.spec
    t.same(pod.containers.map(c => c.name), [appName])
    t.same(pod.initContainers?.map(c => c.name), [sidecarName])
    const side = container(pod.initContainers, sidecarName)
    t.equal(side.restartPolicy, 'Always')
    t.same(side.readinessProbe?.httpGet, { path: '/readyz', port: opsPort })
    t.equal(env(side).get('DATABASE_URL')?.valueFrom?.secretKeyRef?.key, 'DATABASE_URL')
    const svc = only<Service>(docs, 'Service')
    t.equal(svc.spec.ports[0]?.targetPort, httpPort, 'a numeric targetPort: named ports of native sidecars need Kubernetes 1.32')
  })

  await t.test('serviceMonitor: only with the API (or force); the Service then publishes the ops port', async t => {
    const plain = await render([MIN_VALUES, overlay({ serviceMonitor: { enabled: true } })])
    t.equal(plain.docs.filter(d => d.kind === 'ServiceMonitor').length, 0, `no monitoring.coreos.com/v1 API under ${renderer.tool}: not rendered`)
    t.same(only<Service>(plain.docs, 'Service').spec.ports.map(p => [p.name, p.targetPort]), [['http', httpPort], ['ops', opsPort]])
    if (renderer.tool === 'chart-render') t.match(plain.stderr, /WARNING: serviceMonitor\.enabled is set/, 'NOTES warn about it')

    const forced = await render([MIN_VALUES, overlay({ serviceMonitor: { enabled: true, force: true, labels: { release: 'prom' } }, podDisruptionBudget: { enabled: true } })])
    const sm = only<ServiceMonitor>(forced.docs, 'ServiceMonitor')
    t.equal(sm.apiVersion, 'monitoring.coreos.com/v1')
    t.equal(sm.metadata.labels?.release, 'prom')
    const svc = only<Service>(forced.docs, 'Service')
    t.same(sm.spec.endpoints.map(e => [e.port, e.path]), [['ops', '/metrics']])
    t.ok(svc.spec.ports.some(p => p.name === 'ops'), 'the endpoint port names a Service port')
    t.ok(subset(sm.spec.selector.matchLabels, svc.metadata.labels), 'the ServiceMonitor selects the Service')
    const pdb = only<Pdb>(forced.docs, 'PodDisruptionBudget')
    t.equal(pdb.spec.maxUnavailable, 1)
    t.equal(pdb.spec.minAvailable, undefined)
    t.ok(subset(pdb.spec.selector.matchLabels, only<Deployment>(forced.docs, 'Deployment').spec.template.metadata.labels))
  })

  await t.test('every optional branch at once renders well-formed manifests', async t => {
    const { docs } = await render([MIN_VALUES, overlay({
      fullnameOverride: 'scan-api',
      imagePullSecrets: [{ name: 'regcred' }],
      serviceAccount: { create: true, name: 'scan-api-sa', annotations: { 'example.com/role': 'scan' } },
      podAnnotations: { 'example.com/team': 'scans' },
      podLabels: { tier: 'api' },
      priorityClassName: 'high',
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'scans', effect: 'NoSchedule' }],
      affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { tier: 'api' } } } }] } },
      topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: { tier: 'api' } } }],
      extraVolumes: [{ name: 'app-cache', emptyDir: {} }, { name: 'redis-ca', configMap: { name: 'redis-ca' } }],
      app: {
        command: ['/app/server'],
        args: ['--listen', '127.0.0.1:3000'],
        env: [{ name: 'LISTEN_ADDR', value: '127.0.0.1:3000' }],
        envFrom: [{ configMapRef: { name: 'scan-api-env' } }],
        resources: { requests: { cpu: '250m', memory: '256Mi' } },
        livenessProbe: { exec: { command: ['/app/healthcheck'] } },
        readinessProbe: { exec: { command: ['/app/healthcheck'] } },
        startupProbe: { exec: { command: ['/app/healthcheck'] }, failureThreshold: 30 },
        volumeMounts: [{ name: 'app-cache', mountPath: '/cache' }]
      },
      sidecar: {
        image: { digest: `sha256:${'0'.repeat(64)}` },
        upstreamUrl: 'http://127.0.0.1:3001',
        preStopSleepSeconds: 0,
        extraEnv: [{ name: 'BCRYPT_COST', value: '12' }, { name: 'UV_THREADPOOL_SIZE', value: '4' }, { name: 'REDIS_TLS_CA_FILE', value: '/etc/redis-ca/ca.crt' }],
        extraVolumeMounts: [{ name: 'redis-ca', mountPath: '/etc/redis-ca', readOnly: true }],
        startupProbe: { initialDelaySeconds: 1 }
      },
      secrets: { redisUrlKey: '', adminTokenKey: 'admin-token' },
      service: { type: 'LoadBalancer', annotations: { 'example.com/lb': 'internal' }, exposeOps: true },
      serviceMonitor: { enabled: true, force: true, namespace: 'monitoring', relabelings: [{ action: 'labeldrop', regex: 'pod' }], metricRelabelings: [{ action: 'keep', sourceLabels: ['__name__'], regex: 'hg_.*' }] },
      podDisruptionBudget: { enabled: true, minAvailable: '50%' },
      networkPolicy: { proxyFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress' } } }], opsFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }], extraIngress: [{ ports: [{ port: 3002 }] }] }
    })])
    for (const d of docs) t.equal(d.metadata.name, d.kind === 'ServiceAccount' ? 'scan-api-sa' : d.kind === 'Job' ? 'scan-api-migrate' : 'scan-api', `${d.kind} named by fullnameOverride`)
    const dep = only<Deployment>(docs, 'Deployment')
    t.equal(dep.spec.template.spec.serviceAccountName, 'scan-api-sa')
    const side = container(dep.spec.template.spec.containers, sidecarName)
    t.equal(side.image, `${String(at(VALUES, 'sidecar', 'image', 'repository'))}@sha256:${'0'.repeat(64)}`, 'a digest wins over the tag')
    t.equal(side.lifecycle, undefined, 'no preStop when preStopSleepSeconds is 0')
    const vars = env(side)
    t.equal(vars.get('UPSTREAM_URL')?.value, 'http://127.0.0.1:3001')
    t.equal(vars.get('BCRYPT_COST')?.value, '12')
    t.ok(side.volumeMounts?.some(m => m.name === 'redis-ca' && m.mountPath === '/etc/redis-ca'), 'sidecar.extraVolumeMounts')
    t.notOk(vars.has('REDIS_URL'), 'an empty key name leaves REDIS_URL unset')
    t.equal(vars.get('ADMIN_TOKEN')?.valueFrom?.secretKeyRef?.key, 'admin-token')
    const sm = only<ServiceMonitor>(docs, 'ServiceMonitor')
    t.equal(sm.metadata.namespace, 'monitoring')
    t.same(at(sm.spec as unknown as Json, 'namespaceSelector'), { matchNames: ['default'] }, 'a ServiceMonitor elsewhere still finds the release namespace')
    t.equal(only<Pdb>(docs, 'PodDisruptionBudget').spec.minAvailable, '50%')
  })

  await t.test('values that cannot work are refused with the key named', async t => {
    const cases: Array<[string, string[], RegExp]> = [
      ['chart defaults alone', [], /app\.image\.repository is required/],
      ['no Secret', [MIN_VALUES, overlay({ secrets: { existingSecret: '' } })], /secrets\.existingSecret is required/],
      ['grace period too short', [MIN_VALUES, overlay({ terminationGracePeriodSeconds: 20 })], /terminationGracePeriodSeconds \(20 s\) must exceed/],
      ['one container name for both', [MIN_VALUES, overlay({ app: { name: 'hg-auth-sidecar' } })], /app\.name and sidecar\.name must differ/],
      ['sentinels without a name', [MIN_VALUES, overlay({ sidecar: { redis: { sentinels: ['s:26379'] } } })], /sidecar\.redis\.sentinelName is required/],
      ['two Redis topologies', [MIN_VALUES, overlay({ sidecar: { redis: { sentinels: ['s:26379'], sentinelName: 'm', clusterNodes: ['c:6379'] } } })], /set one Redis topology/]
    ]
    for (const [name, files, re] of cases) {
      const r = await renderer.render(files)
      t.notOk(r.ok, `${name}: refused`)
      t.match(r.ok ? '' : r.message, re, name)
    }
  })

  await t.test('every rendered manifest passes the Kubernetes schemas', async t => {
    const validate = join(TOOLS, 'k8s-validate', 'validate.sh')
    if (!existsSync(validate)) {
      t.skip(`no ${validate}: manifests not checked against the Kubernetes schemas`, () => {})
      return
    }
    const all = join(dir, 'all.yaml')
    writeFileSync(all, rendered.join('\n---\n'))
    // validate.sh installs kubernetes-models under $TMPDIR/k8s-validate on first use.
    const r = await run('bash', [validate, all], 100_000)
    const last = r.stdout.trim().split('\n').at(-1) ?? ''
    const summary = /^(\d+) valid, (\d+) invalid$/.exec(last)
    if (summary === null) {
      t.skip(`k8s-validate did not run: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`, () => {})
      return
    }
    t.equal(summary[2], '0', r.stdout.split('\n').filter(l => l.startsWith('invalid')).join('\n') || 'no invalid manifests')
    t.ok(Number(summary[1]) >= parseManifests(rendered.join('\n---\n')).length, last)
  })
})

t.test('docs/kubernetes.md: the hand-written sidecar matches the chart', async t => {
  const text = readFileSync(join(ROOT, 'docs', 'kubernetes.md'), 'utf8')
  t.notMatch(text, /hg_(pat|key)_[0-9a-f]{48}/, 'no real-looking credential in the docs')
  const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map(m => parseYaml(m[1] ?? '') as unknown)
  const pod = blocks.map(b => at(b as Json, 'spec', 'template', 'spec')).find(isObject) as unknown as PodSpec | undefined
  if (pod === undefined) throw new Error('no pod template in docs/kubernetes.md')
  const side = container(pod.containers, String(at(VALUES, 'sidecar', 'name')))
  const opsPort = at(DEFAULTS, 'server', 'opsPort')
  t.same(pod.securityContext, at(VALUES, 'podSecurityContext'), 'pod securityContext as in values.yaml')
  t.same(side.securityContext, at(VALUES, 'sidecar', 'securityContext'), 'container securityContext as in values.yaml')
  t.same(side.livenessProbe?.httpGet, { path: '/healthz', port: opsPort })
  t.same(side.readinessProbe?.httpGet, { path: '/readyz', port: opsPort })
  const vars = env(side)
  for (const name of vars.keys()) t.ok(name === 'CONFIG_FILE' || Object.hasOwn(ENV_KEYS, name), `${name} is a variable the sidecar reads`)
  t.ok(vars.get('DATABASE_URL')?.valueFrom?.secretKeyRef, 'DATABASE_URL from a Secret')
  const mount = side.volumeMounts?.find(m => m.mountPath === dirname(vars.get('CONFIG_FILE')?.value ?? ''))
  t.ok(mount, 'CONFIG_FILE lives in a mounted volume')
  t.ok(side.volumeMounts?.some(m => m.mountPath === '/tmp'), '/tmp mounted')
})
