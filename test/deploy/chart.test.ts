import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import AjvModule from 'ajv'
import t from 'tap'
import { parse as parseYaml, parseAllDocuments, stringify } from 'yaml'
import { loadConfig } from '../../src/config/load.js'
import { ENV_KEYS } from '../../src/config/schema.js'
import { CHART, findRenderer, run, TOOLS } from '../helpers/chart.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const TEMPLATES = join(CHART, 'templates')
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
    { assertion: { enabled: true, audience: 'scan-api', existingSecret: 'scan-api-assertion', secretKey: 'keys.json' } },
    { sidecar: { database: { pooler: 'transaction', poolSize: 3 }, redis: { clusterNodes: ['c-0.cache:6379', '[fd00::1]:6379'], tls: true } }, secrets: { redisPasswordKey: 'REDIS_PASSWORD', migrateDatabaseUrlKey: 'MIGRATE_DATABASE_URL' } },
    { sidecar: { redis: { sentinels: ['s-0.cache:26379'], sentinelName: 'mymaster', tls: true, sentinelTls: true } }, secrets: { redisPasswordKey: 'REDIS_PASSWORD', redisSentinelPasswordKey: 'REDIS_SENTINEL_PASSWORD' } }
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
    [{ config: { redis: { password: 'fake-password' } } }, /config\/redis\/password must NOT be valid/],
    [{ config: { redis: { sentinelPassword: 'fake-password' } } }, /config\/redis\/sentinelPassword must NOT be valid/],
    [{ podDisruptionBudget: { minAvailable: '50' } }, /minAvailable/],
    [{ serviceMonitor: { interval: '30' } }, /interval must match pattern/],
    [{ app: { port: 0 } }, /app\/port must be >= 1/],
    [{ app: { image: null } }, /app must have required property 'image'/],
    [{ assertion: { enabled: 'yes' } }, /assertion\/enabled must be boolean/],
    [{ assertion: { secretKey: '' } }, /assertion\/secretKey must match pattern/],
    [{ assertion: { privateKey: 'x' } }, /assertion must NOT have additional properties/],
    [{ sidecar: { redis: { clusterNodes: ['c-0.cache'] } } }, /clusterNodes\/0 must match pattern/],
    [{ sidecar: { database: { pooler: 'session' } } }, /database\/pooler must be equal to one of the allowed values/],
    [{ sidecar: { redis: { url: 'redis://x' } } }, /redis must NOT have additional properties/],
    [{ sidecar: { redis: { sentinelTls: 'yes' } } }, /redis\/sentinelTls must be boolean/],
    [{ secrets: { redisSentinelPasswordKey: 'a key' } }, /redisSentinelPasswordKey must match pattern/]
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

interface EnvVar { name: string, value?: string, valueFrom?: { secretKeyRef?: { name: string, key: string, optional?: boolean } } }
interface Probe { httpGet?: { path: string, port: number | string } }
interface Container {
  name: string
  image: string
  restartPolicy?: string
  imagePullSecrets?: Array<{ name: string }>
  ports?: Array<{ name?: string, containerPort: number }>
  env?: EnvVar[]
  startupProbe?: Probe
  livenessProbe?: Probe
  readinessProbe?: Probe
  args?: string[]
  lifecycle?: { postStart?: object, preStop?: { exec?: { command: string[] }, sleep?: { seconds: number } } }
  resources?: object
  securityContext?: { readOnlyRootFilesystem?: boolean, allowPrivilegeEscalation?: boolean, runAsNonRoot?: boolean, capabilities?: { drop?: string[] } }
  volumeMounts?: Array<{ name: string, mountPath: string, readOnly?: boolean }>
}
interface PodSpec {
  containers: Container[]
  restartPolicy?: string
  imagePullSecrets?: Array<{ name: string }>
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
interface Service extends Manifest {
  spec: { selector: Record<string, string>, ports: Array<{ name: string, port: number, targetPort: number | string }> }
}
interface ServiceMonitor extends Manifest {
  spec: { selector: { matchLabels: Record<string, string> }, endpoints: Array<{ port: string, path: string }> }
}
interface Job extends Manifest {
  spec: { backoffLimit: number, activeDeadlineSeconds: number, template: { metadata: { labels: Record<string, string> }, spec: PodSpec } }
}
interface NetworkPolicy extends Manifest {
  spec: { ingress: Array<{ ports: Array<{ port: number }>, from?: JsonObject[] }> }
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
    const svc = only<Service>(docs, 'Service')
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
      t.ok(name === 'CONFIG_FILE' || name === 'UV_THREADPOOL_SIZE' || Object.hasOwn(ENV_KEYS, name), `${name} is a variable the sidecar reads`)
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
    t.equal(cfg.upstream.readinessCheck, true, 'in the pod, /readyz waits for the app to listen')
    t.equal(cfg.database.migrateOnStart, false, 'the migration Job migrates; the runtime role needs no DDL')
    t.equal(cfg.auth.bcryptConcurrency, 1, 'bcrypt concurrency from the CPU request (100m): 1, not the node\'s cores')
    t.equal(plain.UV_THREADPOOL_SIZE, '1', 'the threadpool likewise')

    // Issue 20: the app gets SIGTERM only after the sidecar stopped taking requests (its preStop) and 5 s more.
    t.same(app.lifecycle, { preStop: { sleep: { seconds: Number(at(VALUES, 'sidecar', 'preStopSleepSeconds')) + 5 } } }, 'the kubelet\'s sleep action (Kubernetes 1.30): no sleep binary needed in the app image')
    t.ok(grace > (app.lifecycle?.preStop?.sleep?.seconds ?? 0), 'the grace period covers it')

    const np = only<NetworkPolicy>(docs, 'NetworkPolicy')
    const opsRule = np.spec.ingress.find(r => r.ports.some(p => p.port === opsPort))
    t.same(opsRule?.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }], 'the ops port admits the monitoring namespace only')

    const job = only<Job>(docs, 'Job')
    t.match(job.metadata.annotations, { 'helm.sh/hook': 'pre-install,pre-upgrade', 'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded' }, 'a Helm hook before install and upgrade')
    const jobPod = job.spec.template.spec
    t.equal(jobPod.restartPolicy, 'Never')
    const migrate = container(jobPod.containers, 'migrate')
    t.equal(migrate.image, side.image, 'the sidecar image')
    t.same(migrate.args, ['hg-sidecar', 'migrate'], 'the CLI on PATH (the image links it into /usr/local/bin)')
    t.same(env(migrate).get('DATABASE_URL')?.valueFrom, { secretKeyRef: { name: 'hg-auth-sidecar-secrets', key: 'DATABASE_URL' } })
    t.same(migrate.securityContext, side.securityContext, 'locked down like the sidecar')
    t.same(jobPod.securityContext, pod.securityContext)
    t.equal(jobPod.serviceAccountName, undefined, 'a pre-install hook cannot use the ServiceAccount the release creates afterwards')
    t.equal(jobPod.automountServiceAccountToken, false)
    t.notOk(subset(dep.spec.template.metadata.labels, job.spec.template.metadata.labels) || subset(svc.spec.selector, job.spec.template.metadata.labels),
      'the Job\'s pod is not selected by the Service or the Deployment\'s selector')

    t.same(svc.spec.ports, [{ name: 'http', port: 80, targetPort: httpPort, protocol: 'TCP' }], 'only the proxy port, no ops port')
    t.ok(subset(svc.spec.selector, dep.spec.template.metadata.labels), 'the Service selects the pods')
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
      extraVolumes: [{ name: 'app-cache', emptyDir: {} }],
      app: {
        command: ['/app/server'],
        args: ['--listen', '127.0.0.1:3000'],
        env: [{ name: 'LISTEN_ADDR', value: '127.0.0.1:3000' }],
        envFrom: [{ configMapRef: { name: 'scan-api-env' } }],
        resources: { requests: { cpu: '250m', memory: '256Mi' } },
        livenessProbe: { exec: { command: ['/app/healthcheck'] } },
        readinessProbe: { exec: { command: ['/app/healthcheck'] } },
        startupProbe: { exec: { command: ['/app/healthcheck'] }, failureThreshold: 30 },
        lifecycle: { postStart: { exec: { command: ['/app/warm-up'] } } },
        preStopSleepSeconds: 8,
        volumeMounts: [{ name: 'app-cache', mountPath: '/cache' }]
      },
      sidecar: {
        image: { digest: `sha256:${'0'.repeat(64)}` },
        upstreamUrl: 'http://127.0.0.1:3001',
        preStopSleepSeconds: 0,
        migrateOnStart: true,
        upstreamReadinessCheck: false,
        extraEnv: [{ name: 'BCRYPT_COST', value: '12' }, { name: 'UV_THREADPOOL_SIZE', value: '4' }],
        resources: { requests: { cpu: '500m', memory: '128Mi' }, limits: { cpu: '1500m', memory: '256Mi' } },
        startupProbe: { initialDelaySeconds: 1 }
      },
      migrationJob: { existingSecret: 'scan-api-ddl', databaseUrlKey: 'OWNER_DATABASE_URL', backoffLimit: 1, activeDeadlineSeconds: 120, annotations: { 'argocd.argoproj.io/hook': 'PreSync' }, resources: { requests: { cpu: '10m' } } },
      grafanaDashboard: { enabled: true, namespace: 'monitoring', labels: { grafana_dashboard: 'yes' }, annotations: { grafana_folder: 'Platform' } },
      prometheusRule: { enabled: true, force: true, namespace: 'monitoring', labels: { release: 'prom' }, selector: 'service="scan-api"', ruleLabels: { team: 'scans' }, runbookUrl: 'https://wiki.example.com/hg/operations/', failedAuthPerSecond: 20, failedAuthRatio: 0.8, upstreamErrorRatio: 0.1 },
      secrets: { redisUrlKey: '', adminTokenKey: 'admin-token' },
      service: { type: 'LoadBalancer', annotations: { 'example.com/lb': 'internal' }, exposeOps: true },
      serviceMonitor: { enabled: true, force: true, namespace: 'monitoring', relabelings: [{ action: 'labeldrop', regex: 'pod' }], metricRelabelings: [{ action: 'keep', sourceLabels: ['__name__'], regex: 'hg_.*' }] },
      podDisruptionBudget: { enabled: true, minAvailable: '50%' },
      networkPolicy: { proxyFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress' } } }], opsFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }], extraIngress: [{ ports: [{ port: 3002 }] }] }
    })])
    const names: Record<string, string> = { ServiceAccount: 'scan-api-sa', Job: 'scan-api-migrate' }
    for (const d of docs) {
      const expected = d.kind === 'ConfigMap' && d.metadata.name.endsWith('-dashboard') ? 'scan-api-dashboard' : names[d.kind] ?? 'scan-api'
      t.equal(d.metadata.name, expected, `${d.kind} named by fullnameOverride`)
    }
    const dep = only<Deployment>(docs, 'Deployment')
    t.equal(dep.spec.template.spec.serviceAccountName, 'scan-api-sa')
    const side = container(dep.spec.template.spec.containers, sidecarName)
    t.equal(side.image, `${String(at(VALUES, 'sidecar', 'image', 'repository'))}@sha256:${'0'.repeat(64)}`, 'a digest wins over the tag')
    t.equal(side.lifecycle, undefined, 'no preStop when preStopSleepSeconds is 0')
    t.same(container(dep.spec.template.spec.containers, appName).lifecycle, { postStart: { exec: { command: ['/app/warm-up'] } }, preStop: { sleep: { seconds: 8 } } },
      'the app\'s own lifecycle, with the preStop sleep added since it has none')
    const vars = env(side)
    t.equal(vars.get('MIGRATE_ON_START')?.value, 'true')
    t.equal(vars.get('UPSTREAM_READINESS_CHECK')?.value, 'false')
    t.same(side.env?.filter(e => e.name === 'UV_THREADPOOL_SIZE'), [{ name: 'UV_THREADPOOL_SIZE', value: '4' }], 'extraEnv replaces the derived UV_THREADPOOL_SIZE (no duplicate)')
    t.equal(vars.get('BCRYPT_CONCURRENCY')?.value, '2', 'the CPU limit (1500m) rounded up')
    const job = only<Job>(docs, 'Job')
    t.equal(job.metadata.annotations?.['argocd.argoproj.io/hook'], 'PreSync')
    t.equal(job.spec.backoffLimit, 1)
    t.equal(job.spec.activeDeadlineSeconds, 120)
    t.same(env(container(job.spec.template.spec.containers, 'migrate')).get('DATABASE_URL')?.valueFrom, { secretKeyRef: { name: 'scan-api-ddl', key: 'OWNER_DATABASE_URL' } }, 'a DDL-capable credential for the Job only')
    t.same(job.spec.template.spec.imagePullSecrets, [{ name: 'regcred' }])
    t.equal(vars.get('UPSTREAM_URL')?.value, 'http://127.0.0.1:3001')
    t.equal(vars.get('BCRYPT_COST')?.value, '12')
    t.notOk(vars.has('REDIS_URL'), 'an empty key name leaves REDIS_URL unset')
    t.equal(vars.get('ADMIN_TOKEN')?.valueFrom?.secretKeyRef?.key, 'admin-token')
    const sm = only<ServiceMonitor>(docs, 'ServiceMonitor')
    t.equal(sm.metadata.namespace, 'monitoring')
    t.same(at(sm.spec as unknown as Json, 'namespaceSelector'), { matchNames: ['default'] }, 'a ServiceMonitor elsewhere still finds the release namespace')
    t.equal(only<Pdb>(docs, 'PodDisruptionBudget').spec.minAvailable, '50%')
    const dash = docs.find(d => d.kind === 'ConfigMap' && d.metadata.name === 'scan-api-dashboard')
    t.equal(dash?.metadata.namespace, 'monitoring')
    t.equal(dash?.metadata.labels?.grafana_dashboard, 'yes')
    t.equal(dash?.metadata.annotations?.grafana_folder, 'Platform')
    const rule = only<Manifest>(docs, 'PrometheusRule')
    t.equal(rule.metadata.namespace, 'monitoring')
    t.equal(rule.metadata.labels?.release, 'prom')
    const rules = (at(rule.spec as Json, 'groups') as Json[]).flatMap(g => at(g, 'rules') as JsonObject[])
    for (const r of rules) {
      t.match(String(r.expr), /\{service="scan-api"[,}]/, `${String(r.alert)}: the selector given`)
      t.equal(at(r, 'labels', 'team'), 'scans')
      t.equal(at(r, 'annotations', 'runbook_url'), `https://wiki.example.com/hg/operations#${String(r.alert).toLowerCase()}`)
    }
    t.match(String(rules.find(r => r.alert === 'HgAuthFailedAuthSurge')?.expr), /\) > 20\nand\n[\s\S]*\) > 0\.8\n?$/, 'thresholds from values')
    t.match(String(rules.find(r => r.alert === 'HgAuthUpstreamErrors')?.expr), /\) > 0\.1\n?$/)
  })

  await t.test('sizing: UV_THREADPOOL_SIZE and BCRYPT_CONCURRENCY from the CPU limit, else the request', async t => {
    const sized = async (resources: JsonObject): Promise<Record<string, string | undefined>> => {
      const { docs } = await render([MIN_VALUES, overlay({ sidecar: { resources } })])
      const vars = plainEnv(container(only<Deployment>(docs, 'Deployment').spec.template.spec.containers, sidecarName))
      return { UV_THREADPOOL_SIZE: vars.UV_THREADPOOL_SIZE, BCRYPT_CONCURRENCY: vars.BCRYPT_CONCURRENCY }
    }
    t.same(await sized({ requests: { cpu: '250m' }, limits: { cpu: 3 } }), { UV_THREADPOOL_SIZE: '3', BCRYPT_CONCURRENCY: '3' }, 'a limit wins')
    t.same(await sized({ requests: { cpu: '2500m' } }), { UV_THREADPOOL_SIZE: '3', BCRYPT_CONCURRENCY: '3' }, 'no limit: the request, rounded up')
    t.same(await sized({ requests: { cpu: '0.5' } }), { UV_THREADPOOL_SIZE: '1', BCRYPT_CONCURRENCY: '1' }, 'a fraction: one')
    t.same(await sized({ limits: { cpu: '1' } }), { UV_THREADPOOL_SIZE: '1', BCRYPT_CONCURRENCY: '1' })
    t.same(await sized({ requests: null, limits: null }), { UV_THREADPOOL_SIZE: undefined, BCRYPT_CONCURRENCY: undefined }, 'no CPU figure: the sidecar reads its cgroup')
  })

  await t.test('scale-out values: pooler, pool size, Redis Sentinel or Cluster, their Secret keys (docs/DEPLOYMENT.md)', async t => {
    const sidecarOf = async (values: JsonObject): Promise<Container> => {
      const { docs } = await render([MIN_VALUES, overlay(values)])
      return container(only<Deployment>(docs, 'Deployment').spec.template.spec.containers, sidecarName)
    }
    const defaults = env(await sidecarOf({}))
    for (const name of ['DATABASE_POOLER', 'DB_POOL_SIZE', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES', 'REDIS_TLS', 'REDIS_SENTINEL_TLS', 'REDIS_PASSWORD', 'REDIS_SENTINEL_PASSWORD']) t.equal(defaults.get(name), undefined, `defaults: no ${name}`)

    const pooled = await sidecarOf({ sidecar: { database: { pooler: 'transaction', poolSize: 3 } }, secrets: { migrateDatabaseUrlKey: 'MIGRATE_DATABASE_URL' } })
    t.match(plainEnv(pooled), { DATABASE_POOLER: 'transaction', DB_POOL_SIZE: '3' })
    t.same(env(pooled).get('MIGRATE_DATABASE_URL')?.valueFrom, { secretKeyRef: { name: 'hg-auth-sidecar-secrets', key: 'MIGRATE_DATABASE_URL' } })

    const sentinel = await sidecarOf({ sidecar: { redis: { sentinels: ['s-0.cache:26379', 's-1.cache:26379'], sentinelName: 'mymaster', tls: true } }, secrets: { redisPasswordKey: 'REDIS_PASSWORD' } })
    t.match(plainEnv(sentinel), { REDIS_SENTINELS: 's-0.cache:26379,s-1.cache:26379', REDIS_SENTINEL_NAME: 'mymaster', REDIS_TLS: 'true' })
    t.equal(env(sentinel).get('REDIS_URL'), undefined, 'no REDIS_URL beside a Sentinel set (the sidecar refuses two topologies)')
    t.same(env(sentinel).get('REDIS_PASSWORD')?.valueFrom, { secretKeyRef: { name: 'hg-auth-sidecar-secrets', key: 'REDIS_PASSWORD' } })
    t.equal(env(sentinel).get('REDIS_SENTINEL_TLS'), undefined, 'the sentinels speak plain text unless sentinelTls')
    t.equal(env(sentinel).get('REDIS_SENTINEL_PASSWORD'), undefined)

    // The sentinels' own TLS and password: chart values, not extraEnv.
    const sentinelTls = await sidecarOf({ sidecar: { redis: { sentinels: ['s-0.cache:26379'], sentinelName: 'mymaster', tls: true, sentinelTls: true } }, secrets: { redisPasswordKey: 'REDIS_PASSWORD', redisSentinelPasswordKey: 'REDIS_SENTINEL_PASSWORD' } })
    t.match(plainEnv(sentinelTls), { REDIS_SENTINELS: 's-0.cache:26379', REDIS_TLS: 'true', REDIS_SENTINEL_TLS: 'true' })
    t.same(env(sentinelTls).get('REDIS_SENTINEL_PASSWORD')?.valueFrom, { secretKeyRef: { name: 'hg-auth-sidecar-secrets', key: 'REDIS_SENTINEL_PASSWORD' } })
    t.same(env(sentinelTls).get('REDIS_PASSWORD')?.valueFrom, { secretKeyRef: { name: 'hg-auth-sidecar-secrets', key: 'REDIS_PASSWORD' } }, 'the data nodes\' password beside it')
    const fromConfig = loadConfig({ env: { ...plainEnv(sentinelTls), CONFIG_FILE: '', REDIS_SENTINEL_PASSWORD: 'fake-sentinel-password', REDIS_PASSWORD: 'fake-data-password' } }).redis
    t.match(fromConfig, { sentinels: ['s-0.cache:26379'], sentinelName: 'mymaster', sentinelPassword: 'fake-sentinel-password', password: 'fake-data-password', tls: { enabled: true, sentinels: true } }, 'the sidecar reads them as the Sentinel settings')

    const cluster = await sidecarOf({ sidecar: { redis: { clusterNodes: ['c-0.cache:6379', '[fd00::1]:6379'] } } })
    t.match(plainEnv(cluster), { REDIS_CLUSTER_NODES: 'c-0.cache:6379,[fd00::1]:6379' })
    t.equal(env(cluster).get('REDIS_URL'), undefined)

    for (const [name, values, re] of [
      ['Sentinel without its master name', { sidecar: { redis: { sentinels: ['s-0.cache:26379'] } } }, /sidecar\.redis\.sentinelName is required/],
      ['Sentinel and Cluster at once', { sidecar: { redis: { sentinels: ['s-0.cache:26379'], sentinelName: 'm', clusterNodes: ['c-0.cache:6379'] } } }, /one Redis topology at a time/],
      // The sidecar ignores both without sentinels: a silent no-op would look like TLS or auth that is on.
      ['sentinelTls without sentinels', { sidecar: { redis: { sentinelTls: true } } }, /apply to sentinels: set sidecar\.redis\.sentinels/],
      ['a Sentinel password without sentinels', { secrets: { redisSentinelPasswordKey: 'REDIS_SENTINEL_PASSWORD' } }, /apply to sentinels: set sidecar\.redis\.sentinels/]
    ] as Array<[string, JsonObject, RegExp]>) {
      const r = await renderer.render([MIN_VALUES, overlay(values)])
      t.notOk(r.ok, `${name}: refused`)
      t.match(r.ok ? '' : r.message, re, name)
    }
  })

  await t.test('app shutdown: a preStop sleep unless the app has its own; exec sleep before Kubernetes 1.30', async t => {
    const appOf = async (app: JsonObject): Promise<Container> => {
      const { docs } = await render([MIN_VALUES, overlay({ app })])
      return container(only<Deployment>(docs, 'Deployment').spec.template.spec.containers, appName)
    }
    t.same((await appOf({ lifecycle: { preStop: { exec: { command: ['/app/drain'] } } } })).lifecycle, { preStop: { exec: { command: ['/app/drain'] } } }, 'the app\'s own preStop is kept as is')
    t.equal((await appOf({ preStopSleepSeconds: 0 })).lifecycle, undefined, '0: none')
    // Both renderers report Kubernetes 1.30 here: the exec form (`sleep` in the app image) for older clusters is not rendered.
  })

  await t.test('the migration Job: optional, its own Secret key, a given ServiceAccount', async t => {
    const off = await render([MIN_VALUES, overlay({ migrationJob: { enabled: false } })])
    t.equal(off.docs.filter(d => d.kind === 'Job').length, 0)
    if (renderer.tool === 'chart-render') t.match(off.stderr, /WARNING: neither migrationJob\.enabled nor sidecar\.migrateOnStart is set/, 'NOTES: nothing migrates')
    const onStart = await render([MIN_VALUES, overlay({ migrationJob: { enabled: false }, sidecar: { migrateOnStart: true } })])
    t.notMatch(onStart.stderr, /nothing applies the/, 'no warning when the sidecars migrate')
    const sa = await render([MIN_VALUES, overlay({ serviceAccount: { create: false, name: 'scan-api-runner' } })])
    t.equal(only<Job>(sa.docs, 'Job').spec.template.spec.serviceAccountName, 'scan-api-runner', 'an existing ServiceAccount is named')
  })

  await t.test('NOTES warn about app probes the kubelet cannot reach', async t => {
    if (renderer.tool !== 'chart-render') {
      t.comment('helm template prints no NOTES')
      return
    }
    const { stderr } = await render([MIN_VALUES, overlay({ app: { readinessProbe: { httpGet: { path: '/health', port: 3000 } }, livenessProbe: { exec: { command: ['/app/healthcheck'] } } } })])
    t.match(stderr, /WARNING: app\.readinessProbe is not an exec probe/)
    t.notMatch(stderr, /app\.livenessProbe is not an exec probe/, 'exec probes are fine')
  })

  await t.test('dashboard and PrometheusRule: off by default, on when asked (the rule only with the API or force)', async t => {
    const base = await render([MIN_VALUES])
    t.notOk(base.docs.some(d => d.kind === 'PrometheusRule' || d.metadata.name.endsWith('-dashboard')), 'neither by default')
    const noApi = await render([MIN_VALUES, overlay({ prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true } })])
    t.equal(noApi.docs.filter(d => d.kind === 'PrometheusRule').length, 0, `no monitoring.coreos.com/v1 API under ${renderer.tool}: no PrometheusRule`)
    if (renderer.tool === 'chart-render') t.match(noApi.stderr, /WARNING: prometheusRule\.enabled is set/)
    const dash = noApi.docs.find(d => d.kind === 'ConfigMap' && d.metadata.name.endsWith('-dashboard'))
    t.equal(dash?.metadata.labels?.grafana_dashboard, '1', 'labelled for Grafana\'s dashboard sidecar')
    t.same(JSON.parse(dash?.data?.['hg-auth-sidecar.json'] ?? 'null'), JSON.parse(readFileSync(join(CHART, 'dashboards', 'hg-auth-sidecar.json'), 'utf8')), 'the dashboard file, unchanged')
    const forced = await render([MIN_VALUES, overlay({ prometheusRule: { enabled: true, force: true } })])
    const rule = only<Manifest>(forced.docs, 'PrometheusRule')
    t.equal(rule.metadata.namespace, 'default')
    t.match(JSON.stringify(rule.spec), /job=\\"release-hg-auth-sidecar\\", namespace=\\"default\\"/, 'the default selector: the ServiceMonitor\'s job and the namespace')
  })

  await t.test('assertion: env for the sidecar, the key Secret mounted read-only in the sidecar only', async t => {
    const off = container(only<Deployment>((await render([MIN_VALUES])).docs, 'Deployment').spec.template.spec.containers, sidecarName)
    t.notOk([...env(off).keys()].some(n => n.startsWith('ASSERTION_')), 'off by default: no variable')

    const generated = await render([MIN_VALUES, overlay({ assertion: { enabled: true, audience: 'scan-api' } })])
    const gpod = only<Deployment>(generated.docs, 'Deployment').spec.template.spec
    t.same(plainEnv(container(gpod.containers, sidecarName)), { ...plainEnv(container(gpod.containers, sidecarName)), ASSERTION_ENABLED: 'true', ASSERTION_AUDIENCE: 'scan-api' })
    t.notOk(env(container(gpod.containers, sidecarName)).has('ASSERTION_KEY_FILE'), 'no Secret: a key generated at start')
    t.notOk(gpod.volumes?.some(v => v.name === 'assertion-key'))

    const { docs } = await render([MIN_VALUES, overlay({ assertion: { enabled: true, audience: 'scan-api', existingSecret: 'scan-api-assertion', secretKey: 'keys.json' } })])
    const pod = only<Deployment>(docs, 'Deployment').spec.template.spec
    const side = container(pod.containers, sidecarName)
    const plain = plainEnv(side)
    t.equal(plain.ASSERTION_KEY_FILE, '/etc/hg-assertion/keys.json')
    // UV_THREADPOOL_SIZE is read by the executable before the config (src/threadpool.cts).
    for (const name of Object.keys(plain)) t.ok(name === 'CONFIG_FILE' || name === 'UV_THREADPOOL_SIZE' || Object.hasOwn(ENV_KEYS, name), `${name} is a variable the sidecar reads`)
    const mount = side.volumeMounts?.find(m => m.name === 'assertion-key')
    t.same(mount, { name: 'assertion-key', mountPath: '/etc/hg-assertion', readOnly: true })
    t.notOk(container(pod.containers, appName).volumeMounts?.some(m => m.name === 'assertion-key'), 'not in the app container')
    t.same((pod.volumes?.find(v => v.name === 'assertion-key') as { secret?: unknown } | undefined)?.secret,
      { secretName: 'scan-api-assertion', defaultMode: 0o440, items: [{ key: 'keys.json', path: 'keys.json' }] })
    const cfg = loadConfig({ env: { ...plain, CONFIG_FILE: '' } })
    t.match(cfg.assertion, { enabled: true, audience: 'scan-api', keyFile: '/etc/hg-assertion/keys.json' }, 'the sidecar reads them')

    const r = await renderer.render([MIN_VALUES, overlay({ assertion: { enabled: true } })])
    t.notOk(r.ok, 'enabled without an audience is refused')
    t.match(r.ok ? '' : r.message, /assertion\.audience is required/)
  })

  await t.test('values that cannot work are refused with the key named', async t => {
    const cases: Array<[string, string[], RegExp]> = [
      ['chart defaults alone', [], /app\.image\.repository is required/],
      ['no Secret', [MIN_VALUES, overlay({ secrets: { existingSecret: '' } })], /secrets\.existingSecret is required/],
      ['grace period too short', [MIN_VALUES, overlay({ terminationGracePeriodSeconds: 20 })], /terminationGracePeriodSeconds \(20 s\) must exceed/],
      ['one container name for both', [MIN_VALUES, overlay({ app: { name: 'hg-auth-sidecar' } })], /app\.name and sidecar\.name must differ/],
      ['app preStop longer than the grace period', [MIN_VALUES, overlay({ app: { preStopSleepSeconds: 40 } })], /terminationGracePeriodSeconds \(40 s\) must exceed the app's preStop sleep \(40 s/],
      // A budget that lets no pod go blocks every node drain (kubectl drain waits forever).
      ['one replica, minAvailable 1', [MIN_VALUES, overlay({ replicaCount: 1, podDisruptionBudget: { enabled: true, minAvailable: 1 } })], /podDisruptionBudget lets no pod of 1 go/],
      ['minAvailable 100%', [MIN_VALUES, overlay({ podDisruptionBudget: { enabled: true, minAvailable: '100%' } })], /podDisruptionBudget lets no pod of 2 go/],
      ['two replicas, minAvailable 60% (rounds up to 2)', [MIN_VALUES, overlay({ podDisruptionBudget: { enabled: true, minAvailable: '60%' } })], /podDisruptionBudget lets no pod of 2 go/],
      ['maxUnavailable 0', [MIN_VALUES, overlay({ podDisruptionBudget: { enabled: true, minAvailable: null, maxUnavailable: 0 } })], /podDisruptionBudget lets no pod of 2 go/]
    ]
    for (const [name, files, re] of cases) {
      const r = await renderer.render(files)
      t.notOk(r.ok, `${name}: refused`)
      t.match(r.ok ? '' : r.message, re, name)
    }
    for (const [name, over] of [
      ['one replica, maxUnavailable 1', { replicaCount: 1, podDisruptionBudget: { enabled: true } }],
      ['three replicas, minAvailable 2', { replicaCount: 3, podDisruptionBudget: { enabled: true, minAvailable: 2 } }],
      ['two replicas, minAvailable 50%', { podDisruptionBudget: { enabled: true, minAvailable: '50%' } }]
    ] as Array<[string, JsonObject]>) {
      const r = await renderer.render([MIN_VALUES, overlay(over)])
      t.ok(r.ok, `${name}: a drain can proceed, rendered${r.ok ? '' : `: ${r.message}`}`)
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
