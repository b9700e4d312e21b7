// Small statistics and formatting helpers.

export function median (xs) {
  const v = xs.filter(x => x !== null && x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = Math.floor(v.length / 2)
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2
}

export function min (xs) {
  const v = xs.filter(x => x !== null && x !== undefined)
  return v.length === 0 ? null : Math.min(...v)
}

export function max (xs) {
  const v = xs.filter(x => x !== null && x !== undefined)
  return v.length === 0 ? null : Math.max(...v)
}

/** Summary of one scenario's rounds: median and range of each field. */
export function summarizeRuns (runs) {
  const pick = k => runs.map(r => r[k])
  return {
    rounds: runs.length,
    rps: median(pick('rps')),
    rpsMin: min(pick('rps')),
    rpsMax: max(pick('rps')),
    p50: median(pick('p50')),
    p99: median(pick('p99')),
    p99Min: min(pick('p99')),
    p99Max: max(pick('p99')),
    cpuUs: runs.every(r => r.cpuUs !== undefined)
      ? Object.fromEntries(['server', 'upstream', 'postgres', 'redis'].map(k => [k, median(runs.map(r => r.cpuUs[k]))]))
      : null,
    unexpected: runs.reduce((a, r) => a + (r.total - r.ok), 0),
    errors: runs.reduce((a, r) => a + (r.errors ?? 0), 0)
  }
}

export function int (n) {
  return n === null || n === undefined ? '-' : Math.round(n).toLocaleString('en-US')
}

export function num (n, digits = 1) {
  return n === null || n === undefined ? '-' : n.toFixed(digits)
}

export function ms (n) {
  if (n === null || n === undefined) return '-'
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)
}

export function mb (bytes) {
  return bytes === null || bytes === undefined ? '-' : (bytes / 1048576).toFixed(1) + ' MiB'
}

export function ratio (a, b) {
  return a === null || b === null || b === 0 ? null : a / b
}

export function x (r) {
  return r === null || r === undefined ? '-' : r.toFixed(2) + 'x'
}

/** Plain-text table with right-aligned numeric columns. */
export function textTable (header, rows) {
  const all = [header, ...rows]
  const w = header.map((_, i) => Math.max(...all.map(r => String(r[i]).length)))
  const line = r => r.map((c, i) => i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i])).join('  ')
  return [line(header), w.map(n => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n')
}

export function mdTable (header, rows, align) {
  const a = align ?? header.map((_, i) => i === 0 ? 'l' : 'r')
  const esc = c => String(c).replace(/\|/g, '\\|')
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `|${a.map(x => x === 'l' ? '---' : '---:').join('|')}|`,
    ...rows.map(r => `| ${r.map(esc).join(' | ')} |`)
  ].join('\n')
}
