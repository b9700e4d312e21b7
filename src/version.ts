import { readFileSync } from 'node:fs'

let cached: string | undefined

/** The package version (package.json next to dist/ and src/), read once on first use. */
export function packageVersion (): string {
  if (cached === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown }
      cached = typeof pkg.version === 'string' ? pkg.version : 'unknown'
    } catch {
      cached = 'unknown'
    }
  }
  return cached
}
