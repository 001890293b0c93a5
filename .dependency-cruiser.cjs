// The dependency direction of DESIGN.md, enforced in `npm run lint`:
// cli/main -> api, acme -> ca, revocation, policy -> hsm (interface), db, x509 helpers.
// hsm, policy, lint and x509 helpers import nothing of the rest; ceremony never imports api or db.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'hsm-is-a-leaf',
      comment: 'src/hsm knows nothing of certificates, databases or HTTP.',
      severity: 'error',
      from: { path: '^src/hsm/' },
      to: { path: '^src/', pathNot: '^src/hsm/' },
    },
    {
      name: 'pure-modules-are-leaves',
      comment: 'policy, lint and x509 helpers import only each other and src/lib.',
      severity: 'error',
      from: { path: '^src/(policy|lint|x509)/' },
      to: { path: '^src/', pathNot: '^src/(policy|lint|x509|lib)/' },
    },
    {
      name: 'lib-is-a-leaf',
      severity: 'error',
      from: { path: '^src/lib/' },
      to: { path: '^src/', pathNot: '^src/lib/' },
    },
    {
      name: 'ceremony-is-offline',
      comment: 'The ceremony never touches the online API or database.',
      severity: 'error',
      from: { path: '^src/ceremony/' },
      to: { path: '^src/(api|db|ca|revocation)/' },
    },
    {
      name: 'only-the-edge-knows-http',
      severity: 'error',
      from: { path: '^src/(ca|revocation|db|policy|lint|x509|hsm|ceremony|acme)/' },
      to: { path: '^src/(api|cli)/' },
    },
    {
      name: 'domain-does-not-know-hono',
      comment: 'Only src/api speaks hono; src/acme gets plain requests from its routes in src/api/acme.',
      severity: 'error',
      from: { path: '^src/(ca|revocation|db|policy|lint|x509|hsm|ceremony|acme)/' },
      to: { path: 'node_modules/(hono|@hono)/' },
    },
    {
      name: 'src-uses-production-dependencies',
      comment:
        'The packed install has no devDependencies (npm install --omit=dev): src/ imports only dependencies.',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown'] },
    },
    {
      name: 'acme-sits-on-top-of-ca',
      comment:
        'DESIGN.md: an ACME order ends in the same issuing core as a REST request; the core, revocation, ' +
        'storage and the pure modules never depend on ACME.',
      severity: 'error',
      from: { path: '^src/(ca|revocation|db|policy|lint|x509|hsm|ceremony|lib)/' },
      to: { path: '^src/acme/' },
    },
    {
      name: 'acme-uses-the-public-contract-of-ca',
      comment:
        "src/acme issues through CertificateAuthority (src/ca/types.ts) only, not the core's internals, " +
        'which may be restructured (issue #20).',
      severity: 'error',
      from: { path: '^src/acme/' },
      to: { path: '^src/ca/', pathNot: '^src/ca/types\\.ts$' },
    },
    { name: 'no-circular', severity: 'error', from: { path: '^src/' }, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.test\\.ts$' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
  },
};
