import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import t from 'tap'
import { ROOT } from '../helpers/stack.js'

const SRC = join(ROOT, 'src')

function files (dir: string): string[] {
  return readdirSync(dir).flatMap(name => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? files(p) : /\.c?ts$/.test(name) ? [p] : []
  })
}

const sources = files(SRC).map(p => ({ path: relative(SRC, p).replaceAll('\\', '/'), text: readFileSync(p, 'utf8') }))

/** Project modules a file imports, as paths relative to src/ without the extension. */
function importsOf (file: { path: string, text: string }): string[] {
  const dir = file.path.includes('/') ? file.path.slice(0, file.path.lastIndexOf('/')) : ''
  const out: string[] = []
  for (const m of file.text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"\n]*?from\s+'(\.[^']+)'|import\('(\.[^']+)'\)/g)) {
    const spec = (m[1] ?? m[2]) as string
    const parts = (dir === '' ? [] : dir.split('/'))
    for (const seg of spec.split('/')) {
      if (seg === '.') continue
      if (seg === '..') parts.pop()
      else parts.push(seg)
    }
    out.push(parts.join('/').replace(/\.c?js$/, ''))
  }
  return out
}

t.test('lower layers never import the layers above them (docs/DESIGN.md §12)', async t => {
  const lower = /^(auth|store|credentials|config)\//
  const upper = /^(proxy\/|api\/|app$|server$)/
  for (const f of sources.filter(f => lower.test(f.path))) {
    for (const dep of importsOf(f)) t.notOk(upper.test(dep), `${f.path} imports ${dep}`)
  }
  for (const f of sources.filter(f => f.path.startsWith('credentials/'))) {
    for (const dep of importsOf(f)) t.notOk(/^(store|auth|management)\//.test(dep), `${f.path} imports ${dep}`)
  }
  for (const leaf of ['mask.ts', 'errors.ts', 'http/reply.ts']) {
    const f = sources.find(s => s.path === leaf)
    t.ok(f, leaf)
    for (const dep of importsOf(f ?? { path: leaf, text: '' })) t.ok(/^(errors|mask)$/.test(dep), `${leaf} imports ${dep}`)
  }
})

t.test('every JSON error body comes from the one reply writer', async t => {
  const writers = new Set(['errors.ts', 'http/reply.ts'])
  for (const f of sources.filter(f => !writers.has(f.path))) {
    const literals = f.text.match(/\berror:\s*(['"`]|PublicCode\b|[a-z]+\.publicCode)/g) ?? []
    t.same(literals, [], `${f.path} writes an error body of its own`)
  }
})

t.test('every docs/DESIGN.md reference in src/ names a section the document has', async t => {
  const doc = readFileSync(join(ROOT, 'docs/DESIGN.md'), 'utf8')
  const headings = new Set([...doc.matchAll(/^#{2,3} (\d+(?:\.\d+)?)[. ]/gm)].map(m => m[1]))
  t.ok(headings.has('2') && headings.has('12'), 'numbered sections')
  const steps = doc.slice(doc.indexOf('## 2.'), doc.indexOf('### 2.1'))
  let refs = 0
  for (const f of sources) {
    for (const m of f.text.matchAll(/DESIGN\.md (§?[^\s),:;]*)/g)) {
      refs++
      const ref = m[1] as string
      t.ok(ref.startsWith('§'), `${f.path}: '${m[0]}' names a section with §`)
      const sec = /^§(\d+(?:\.\d+)?)/.exec(ref)?.[1]
      t.ok(sec !== undefined && headings.has(sec), `${f.path}: section ${ref} exists`)
    }
    for (const m of f.text.matchAll(/DESIGN\.md §2 steps? (\d)(?:-(\d))?/g)) {
      for (const n of [m[1], m[2]].filter(x => x !== undefined)) t.match(steps, new RegExp(`^${n as string}\\. `, 'm'), `${f.path}: step ${n as string}`)
    }
    for (const m of f.text.matchAll(/DESIGN\.md §2 Errors/g)) t.match(doc, /^### Errors/m, `${f.path}: ${m[0]}`)
  }
  t.ok(refs > 20, `${refs} references checked`)
})
