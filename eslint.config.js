import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'node_modules/**', '.tap/**', 'coverage/**', 'bench/results/**'] }),
  {
    rules: {
      // `void promise` marks a deliberate fire-and-forget (cache fills, stream pumps).
      'no-void': ['error', { allowAsStatement: true }],
      // `const X = {...} as const` with `type X` of the same name is how we replace enums (STYLE.md).
      '@typescript-eslint/no-redeclare': 'off'
    }
  }
]
