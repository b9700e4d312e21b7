import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parser } from '@prometheus-io/lezer-promql'
import t from 'tap'
import { parseAllDocuments, stringify } from 'yaml'
import { CHART, findRenderer } from '../helpers/chart.js'
import { request } from '../helpers/http.js'
import { NO_PROMTOOL, onPath, run } from '../helpers/promtool.js'
import { ROOT, startStack } from '../helpers/stack.js'

// docs/DESIGN.md §11: every dashboard and alert expression uses only metrics the sidecar
// exports; the rules pass promtool check rules and their unit tests.

/** Labels Prometheus adds when it scrapes (the ServiceMonitor's target labels). */
const TARGET_LABELS = new Set(['job', 'namespace', 'pod', 'instance', 'service', 'container', 'endpoint'])

interface Exported { labels: Map<string, Set<string>> }

/** Series name -> label name -> values, from a live exposition (histogram _bucket/_sum/_count included). */
function exportedSeries (text: string): Map<string, Exported> {
  const out = new Map<string, Exported>()
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(line)
    if (m === null) continue
    const name = m[1] as string
    let e = out.get(name)
    if (e === undefined) out.set(name, e = { labels: new Map() })
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      const [, k = '', v = ''] = l
      let values = e.labels.get(k)
      if (values === undefined) e.labels.set(k, values = new Set())
      values.add(v)
    }
  }
  return out
}

interface Selector { metric: string, matchers: Array<{ label: string, op: string, value: string }> }

/** Vector selectors of a PromQL expression (Prometheus's own grammar); throws on a syntax error. */
function selectors (expr: string): Selector[] {
  const tree = parser.parse(expr)
  const found: Selector[] = []
  let error: string | null = null
  const text = (from: number, to: number): string => expr.slice(from, to)
  tree.iterate({
    enter (node) {
      if (node.type.isError) error ??= `syntax error at ${node.from}: ${JSON.stringify(expr.slice(Math.max(0, node.from - 20), node.from + 20))}`
      if (node.name !== 'VectorSelector') return
      const sel: Selector = { metric: '', matchers: [] }
      const ident = node.node.getChild('Identifier')
      if (ident !== null) sel.metric = text(ident.from, ident.to)
      for (const m of node.node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []) {
        const name = m.getChild('LabelName')
        const op = m.getChild('MatchOp')
        const value = m.getChild('StringLiteral')
        if (name === null || op === null || value === null) continue
        sel.matchers.push({ label: text(name.from, name.to), op: text(op.from, op.to), value: JSON.parse(text(value.from, value.to)) as string })
      }
      found.push(sel)
    }
  })
  if (error !== null) throw new Error(error)
  return found
}

/** Problems of one expression against the live exposition: unknown metrics, labels, or label values. */
function problems (expr: string, exported: Map<string, Exported>): string[] {
  const out: string[] = []
  const sels = selectors(expr)
  if (sels.length === 0) out.push('no metric at all')
  for (const s of sels) {
    const e = exported.get(s.metric)
    if (e === undefined) {
      out.push(`${s.metric} is not exported`)
      continue
    }
    for (const m of s.matchers) {
      if (TARGET_LABELS.has(m.label)) continue
      const values = e.labels.get(m.label)
      if (values === undefined) {
        out.push(`${s.metric} has no label ${m.label}`)
        continue
      }
      // Plain values (and alternations of plain values) must be values the sidecar exports.
      const wanted = m.op === '=' ? [m.value] : m.op === '=~' && /^[\w|]+$/.test(m.value) ? m.value.split('|') : []
      for (const v of wanted) if (!values.has(v)) out.push(`${s.metric}{${m.label}="${v}"} is never exported (values: ${[...values].join(', ')})`)
    }
  }
  return out
}

/** Grafana's variables as Prometheus would see them after substitution. */
function grafanaToPromQL (expr: string): string {
  return expr.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m').replace(/\$\{?(namespace|job|pod)\}?/g, '.*')
}

interface Panel { id: number, type: string, title: string, gridPos: { x: number, y: number, w: number, h: number }, datasource?: { uid: string }, targets?: Array<{ expr: string, refId: string, datasource?: { uid: string } }> }
interface Dashboard { uid: string, title: string, panels: Panel[], templating: { list: Array<{ name: string, type: string, query: string | { query: string } }> } }

const DASHBOARD = JSON.parse(readFileSync(join(CHART, 'dashboards', 'hg-auth-sidecar.json'), 'utf8')) as Dashboard

function dashboardExpressions (): Array<{ where: string, expr: string }> {
  const out: Array<{ where: string, expr: string }> = []
  for (const p of DASHBOARD.panels) for (const tg of p.targets ?? []) out.push({ where: `panel "${p.title}" ${tg.refId}`, expr: tg.expr })
  for (const v of DASHBOARD.templating.list) {
    if (v.type !== 'query') continue
    const q = typeof v.query === 'string' ? v.query : v.query.query
    // label_values(<series selector>, <label>): the selector is PromQL.
    const m = /^label_values\((.*),\s*([a-zA-Z_]\w*)\)$/.exec(q)
    if (m === null) throw new Error(`variable ${v.name}: unexpected query ${q}`)
    out.push({ where: `variable ${v.name}`, expr: m[1] as string })
  }
  return out
}

interface Rule { alert: string, expr: string, for: string, labels: Record<string, string>, annotations: Record<string, string> }

/** The PrometheusRule rendered with the default values (force: the renderers have no cluster API). */
async function renderRules (dir: string): Promise<Rule[] | string> {
  const renderer = await findRenderer()
  if (typeof renderer === 'string') return renderer
  const values = join(dir, 'rule-values.yaml')
  writeFileSync(values, stringify({ prometheusRule: { enabled: true, force: true } }))
  const r = await renderer.render([join(CHART, 'ci', 'test-values.yaml'), values])
  if (!r.ok) throw new Error(`${renderer.tool}: ${r.message}`)
  const doc = parseAllDocuments(r.stdout).map(d => d.toJS() as { kind?: string, spec?: { groups: Array<{ rules: Rule[] }> } }).find(d => d?.kind === 'PrometheusRule')
  if (doc?.spec === undefined) throw new Error('no PrometheusRule rendered')
  return doc.spec.groups.flatMap(g => g.rules)
}

t.test('dashboard and alert expressions use only what a live sidecar exports', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'hg-observability-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // The upstream check on: hg_dependency_up{dependency="upstream"} exists too.
  const env = await startStack(t, { config: { upstream: { readinessCheck: true } } })
  const exported = exportedSeries((await request(env.opsPort, '/metrics')).text)
  t.ok(exported.has('hg_auth_decisions_total') && exported.has('hg_auth_duration_seconds_bucket'), `${exported.size} series names exported`)

  t.test('the checker has teeth', async t => {
    t.same(problems('sum(rate(hg_auth_decisions_total{reason="bad_secret"}[5m]))', exported), [])
    t.match(problems('sum(hg_db_pool_connections{state="idle"})', exported), [/has no label state/])
    t.match(problems('rate(hg_auth_decisions_total{reason="stolen"}[5m])', exported), [/never exported/])
    t.match(problems('nodejs_active_handles_total', exported), [/is not exported/])
    t.throws(() => problems('sum(rate(x[5m])', exported), /syntax error/)
  })

  t.test('dashboard', async t => {
    const exprs = dashboardExpressions()
    t.ok(exprs.length > 30, `${exprs.length} expressions`)
    for (const { where, expr } of exprs) t.same(problems(grafanaToPromQL(expr), exported), [], where)
    const used = new Set(exprs.flatMap(e => selectors(grafanaToPromQL(e.expr)).map(s => s.metric)))
    // Issue 20, item 10: what an on-call person needs to see.
    for (const metric of ['hg_auth_decisions_total', 'hg_auth_duration_seconds_bucket', 'hg_bcrypt_queue_depth', 'hg_bcrypt_active', 'hg_bcrypt_concurrency',
      'hg_bcrypt_rejections_total', 'hg_verify_memo_requests_total', 'hg_prefix_cache_requests_total', 'hg_db_query_duration_seconds_bucket',
      'hg_db_pool_connections', 'hg_db_pool_waiting_clients', 'hg_upstream_responses_total', 'hg_upstream_errors_total', 'hg_upstream_duration_seconds_bucket',
      'hg_overload_rejections_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'hg_ready', 'hg_build_info']) {
      t.ok(used.has(metric), `a panel shows ${metric}`)
    }
    const ids = DASHBOARD.panels.map(p => p.id)
    t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
    for (const p of DASHBOARD.panels) {
      t.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24, `panel "${p.title}" fits the 24-column grid`)
      if (p.type === 'row') continue
      t.ok((p.targets ?? []).length > 0, `panel "${p.title}" has queries`)
      for (const tg of p.targets ?? []) t.equal(tg.datasource?.uid, '${datasource}', `panel "${p.title}" ${tg.refId} uses the datasource variable`) // eslint-disable-line no-template-curly-in-string
    }
    t.same(DASHBOARD.templating.list.map(v => v.name), ['datasource', 'namespace', 'job', 'pod'])
  })

  t.test('alerts', async t => {
    const rules = await renderRules(dir)
    if (typeof rules === 'string') {
      t.skip(rules, () => {})
      return
    }
    t.same(rules.map(r => r.alert), ['HgAuthPostgresUnavailable', 'HgAuthBcryptSaturated', 'HgAuthFailedAuthSurge', 'HgAuthUpstreamErrors', 'HgAuthPodNotReady', 'HgAuthOverloaded'],
      'docs/DESIGN.md §11: PostgreSQL unavailable, bcrypt saturation, failed-auth surge, upstream 502/504, not-ready pods (and load shedding)')
    for (const r of rules) t.same(problems(r.expr, exported), [], `${r.alert}: ${r.expr.replace(/\s+/g, ' ').slice(0, 90)}...`)

    const runbooks = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8')
    for (const r of rules) {
      t.match(runbooks, new RegExp(`^### ${r.alert}$`, 'm'), `${r.alert} has a runbook section in docs/operations.md`)
      t.ok(r.labels.severity === 'critical' || r.labels.severity === 'warning', `${r.alert}: severity ${r.labels.severity}`)
      t.ok(r.annotations.summary !== undefined && r.annotations.description !== undefined, `${r.alert}: summary and description`)
    }

    const promtool = onPath('promtool')
    if (promtool === null) {
      t.skip(NO_PROMTOOL, () => {})
      return
    }
    writeFileSync(join(dir, 'full.yaml'), stringify({ groups: [{ name: 'hg-auth-sidecar', rules }] }))
    const check = await run(promtool, ['check', 'rules', join(dir, 'full.yaml')])
    t.equal(check.code, 0, `promtool check rules: ${(check.stdout + check.stderr).trim()}`)
    t.match(check.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`))

    // promtool test rules compares annotations verbatim: the unit tests look at firing and labels.
    const bare = rules.map(({ annotations: _a, ...r }) => r)
    writeFileSync(join(dir, 'rules.yaml'), stringify({ groups: [{ name: 'hg-auth-sidecar', rules: bare }] }))
    const tests = join(ROOT, 'test', 'deploy', 'alerts.promtool.yaml')
    copyFileSync(tests, join(dir, 'alerts.promtool.yaml'))
    const unit = await run(promtool, ['test', 'rules', 'alerts.promtool.yaml'], { cwd: dir })
    t.equal(unit.code, 0, `promtool test rules:\n${(unit.stdout + unit.stderr).trim()}`)
    const firing = new Set([...readFileSync(tests, 'utf8').matchAll(/alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels/g)].map(m => m[1]))
    for (const r of rules) t.ok(firing.has(r.alert), `${r.alert}: a unit test sees it fire`)
  })
})
