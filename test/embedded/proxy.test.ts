// The same tests on the embedded backends: PGlite and the in-process prefix cache.
process.env.HG_TEST_BACKEND = 'embedded'
await import('../proxy/proxy.test.js')
