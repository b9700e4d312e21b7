import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { Value } from '@sinclair/typebox/value'
import { parse as parseYaml } from 'yaml'
import { ConfigSchema, ENV_KEYS, type Config, type EnvKey } from './schema.js'

export class ConfigError extends Error {
  override name = 'ConfigError'
}

export const DEFAULT_CONFIG_FILE = new URL('../../config/default.yaml', import.meta.url)

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonObject = { [key: string]: Json }
export type DeepPartial<T> = T extends unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T

export interface LoadOptions {
  /** Environment to read deployment settings from; defaults to an empty one (tests pass object literals). */
  env?: Record<string, string | undefined>
  /** Extra config merged last (tests). */
  overrides?: DeepPartial<Config>
}

function isObject (v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function merge (base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base }
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue
    const b = out[k]
    out[k] = isObject(b) && isObject(v) ? merge(b, v) : v
  }
  return out
}

function readYaml (file: string | URL, what: string): JsonObject {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`CONFIG_FILE: cannot read ${what}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
  }
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch (err) {
    throw new ConfigError(`CONFIG_FILE: ${what} is not valid YAML: ${(err as Error).message.split('\n')[0] ?? ''}`)
  }
  if (doc === null || doc === undefined) return {}
  if (!isObject(doc)) throw new ConfigError(`CONFIG_FILE: ${what} must hold a mapping at the top level`)
  return doc
}

function setPath (obj: JsonObject, path: string, value: Json): void {
  const parts = path.split('.')
  let cur = obj
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i] as string
    const next = cur[p]
    if (!isObject(next)) cur[p] = {}
    cur = cur[p] as JsonObject
  }
  cur[parts[parts.length - 1] as string] = value
}

function envValue (name: EnvKey, raw: string): Json {
  const { type } = ENV_KEYS[name]
  if (type === 'int') {
    if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${name}: expected an integer, got ${JSON.stringify(raw.slice(0, 40))}`)
    return Number(raw.trim())
  }
  if (type === 'bool') {
    const v = raw.trim().toLowerCase()
    if (['1', 'true', 'yes', 'on'].includes(v)) return true
    if (['0', 'false', 'no', 'off'].includes(v)) return false
    throw new ConfigError(`${name}: expected true or false, got ${JSON.stringify(raw.slice(0, 40))}`)
  }
  if (type === 'list') return raw.split(',').map(v => v.trim()).filter(v => v !== '')
  if (type === 'trust') {
    const v = raw.trim().toLowerCase()
    if (['1', 'true', 'yes', 'on'].includes(v)) return true
    if (['0', 'false', 'no', 'off'].includes(v)) return false
    return /^\d+$/.test(v) ? Number(v) : raw.trim()
  }
  return raw
}

const envByKey = new Map<string, string>(Object.entries(ENV_KEYS).map(([env, { key }]) => [key, env]))
const SECRET_KEYS = new Set(['adminToken', 'database.url', 'database.migrateUrl', 'redis.url', 'redis.password', 'redis.sentinelPassword'])

function describeKey (pointer: string): string {
  const key = pointer.replace(/^\//, '').split('/').map(p => /^\d+$/.test(p) ? `[${p}]` : `.${p}`).join('').replace(/^\./, '')
  const env = envByKey.get(key)
  return env === undefined ? key : `${key} (${env})`
}

/** Loads, merges and validates the configuration; throws ConfigError naming the bad key. */
export function loadConfig (options: LoadOptions = {}): Config {
  const env = options.env ?? {}
  let doc = readYaml(DEFAULT_CONFIG_FILE, 'config/default.yaml')
  const file = env.CONFIG_FILE
  if (file !== undefined && file !== '') doc = merge(doc, readYaml(file, file))
  for (const name of Object.keys(ENV_KEYS) as EnvKey[]) {
    const raw = env[name]
    if (raw === undefined || raw === '') continue
    setPath(doc, ENV_KEYS[name].key, envValue(name, raw))
  }
  if (options.overrides !== undefined) doc = merge(doc, options.overrides as JsonObject)
  const redisUrl = isObject(doc.redis) ? doc.redis.url : undefined
  if (typeof redisUrl === 'string' && /^redis\+sentinel:/i.test(redisUrl)) {
    throw new ConfigError('invalid config: redis.url (REDIS_URL): a Sentinel set is configured with redis.sentinels (REDIS_SENTINELS=host:port,...) and redis.sentinelName (REDIS_SENTINEL_NAME), not a URL')
  }

  const first = Value.Errors(ConfigSchema, doc).First()
  if (first !== undefined) {
    const key = describeKey(first.path)
    const bare = key.split(' ')[0] ?? key
    const shown = SECRET_KEYS.has(bare) ? '' : ` (got ${JSON.stringify(first.value)?.slice(0, 60) ?? 'nothing'})`
    throw new ConfigError(`invalid config: ${key === '' ? '(top level)' : key}: ${first.message}${shown}`)
  }
  const config = doc as unknown as Config
  checkSemantics(config)
  return config
}

function checkSemantics (config: Config): void {
  const names = new Set<string>()
  for (const [i, role] of config.roles.entries()) {
    if (names.has(role.name)) throw new ConfigError(`invalid config: roles[${i}].name: duplicate role ${role.name}`)
    names.add(role.name)
  }
  const known = new Set(config.roles.flatMap(r => r.permissions))
  for (const [i, route] of config.routes.entries()) {
    if (route.prefix.length > 1 && route.prefix.endsWith('/')) {
      throw new ConfigError(`invalid config: routes[${i}].prefix: must not end with "/" (prefixes are segment-aware)`)
    }
    for (const [j, rule] of (route.rules ?? []).entries()) {
      const where = `routes[${i}].rules[${j}]`
      if (rule.permission !== undefined && rule.public === true) {
        throw new ConfigError(`invalid config: ${where}: a rule is either public or names a permission, not both`)
      }
      if (rule.permission !== undefined && !known.has(rule.permission)) {
        throw new ConfigError(`invalid config: ${where}.permission: ${rule.permission} is not granted by any role`)
      }
    }
  }
  if (config.assertion.enabled && config.assertion.audience === null) {
    throw new ConfigError('invalid config: assertion.audience (ASSERTION_AUDIENCE): required when assertion.enabled is true (the upstream checks that an assertion was issued for it)')
  }
  const redis = config.redis
  const topologies = [redis.url !== null && 'redis.url (REDIS_URL)', redis.sentinels.length > 0 && 'redis.sentinels (REDIS_SENTINELS)', redis.clusterNodes.length > 0 && 'redis.clusterNodes (REDIS_CLUSTER_NODES)'].filter(v => v !== false)
  if (topologies.length > 1) throw new ConfigError(`invalid config: ${topologies.join(' and ')}: set one Redis topology, not ${topologies.length}`)
  if (redis.sentinels.length > 0 && redis.sentinelName === null) {
    throw new ConfigError('invalid config: redis.sentinelName (REDIS_SENTINEL_NAME): required with redis.sentinels (the master group name the sentinels monitor)')
  }
  if ((redis.tls.certFile === null) !== (redis.tls.keyFile === null)) {
    throw new ConfigError('invalid config: redis.tls.certFile (REDIS_TLS_CERT_FILE): a client certificate needs both certFile and keyFile')
  }
  if (config.tokens.defaultLifetimeDays > config.tokens.maxLifetimeDays) {
    throw new ConfigError('invalid config: tokens.defaultLifetimeDays: must not exceed tokens.maxLifetimeDays')
  }
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped), and the name `localhost`. */
export function isLoopback (host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1')
  if (h === 'localhost') return true
  const v4 = h.startsWith('::ffff:') && isIP(h.slice(7)) === 4 ? h.slice(7) : h
  if (isIP(v4) === 4) return v4.startsWith('127.')
  return isIP(h) === 6 && /^(0{0,4}:){2,7}0{0,3}1$/.test(h)
}

/**
 * docs/DESIGN.md §2.1: the admin API mints credentials; reachable from other
 * hosts it must require ADMIN_TOKEN. Checked before anything starts (serve,
 * and createSidecar for any other caller), not by loadConfig: the CLI's
 * management commands open no admin port.
 */
export function checkAdminExposure (config: Pick<Config, 'server' | 'adminToken'>): void {
  if (config.adminToken !== null || isLoopback(config.server.adminHost)) return
  throw new ConfigError(`invalid config: adminToken (ADMIN_TOKEN): required when server.adminHost (ADMIN_HOST) is not a loopback address (got ${JSON.stringify(config.server.adminHost)}); without it anyone who reaches the admin port could mint credentials`)
}
