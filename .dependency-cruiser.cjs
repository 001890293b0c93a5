// The dependency direction of DESIGN.md, enforced in `npm run lint`:
// cli/main -> api, acme -> ca, revocation, policy -> issuance -> hsm (interface), db, x509 helpers.
// hsm, policy, lint and x509 helpers import nothing of the rest but src/lib; ceremony never imports
// api, db or ca (it signs through src/issuance, which is database-free).
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'hsm-is-a-leaf',
      comment:
        'src/hsm knows nothing of certificates, databases or HTTP; it may use src/lib (small pure helpers ' +
        'that import nothing of the project, DESIGN.md) so clocks, locks and encodings are not written twice.',
      severity: 'error',
      from: { path: '^src/hsm/' },
      to: { path: '^src/', pathNot: '^src/(hsm|lib)/' },
    },
    {
      name: 'issuance-is-database-free',
      comment:
        'src/issuance (token, signer, post-sign check) is shared by the online CA and the offline ' +
        'ceremony: it may use lint, x509 helpers and lib, never storage, HTTP or the online core.',
      severity: 'error',
      from: { path: '^src/issuance/' },
      to: { path: '^src/', pathNot: '^src/(issuance|lint|x509|lib)/' },
    },
    {
      name: 'pure-modules-are-leaves',
      comment:
        'policy, lint and x509 helpers import only each other and src/lib: lint returns findings and ' +
        'never signs (signing is src/issuance, above them).',
      severity: 'error',
      from: { path: '^src/(policy|lint|x509)/' },
      to: { path: '^src/', pathNot: '^src/(policy|lint|x509|lib)/' },
    },
    {
      name: 'lib-is-a-leaf',
      comment: 'src/lib is imported by every module, hsm included: it must import nothing of the project.',
      severity: 'error',
      from: { path: '^src/lib/' },
      to: { path: '^src/', pathNot: '^src/lib/' },
    },
    {
      name: 'ceremony-is-offline',
      comment:
        'The ceremony runs offline: never the online API, database, issuing core or revocation; it ' +
        'signs through src/issuance like the online CA.',
      severity: 'error',
      from: { path: '^src/ceremony/' },
      to: { path: '^src/(api|db|ca|revocation)/' },
    },
    {
      name: 'only-the-edge-knows-http',
      comment: 'HTTP and the command line are edges: nothing below them calls back up into them.',
      severity: 'error',
      from: { path: '^src/(ca|revocation|db|policy|lint|x509|hsm|ceremony|acme|issuance|lib)/' },
      to: { path: '^src/(api|cli)/' },
    },
    {
      name: 'domain-does-not-know-hono',
      comment: 'Only src/api speaks hono; src/acme gets plain requests from its routes in src/api/acme.',
      severity: 'error',
      from: { path: '^src/(ca|revocation|db|policy|lint|x509|hsm|ceremony|acme|issuance|lib)/' },
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
      from: { path: '^src/(ca|revocation|db|policy|lint|x509|hsm|ceremony|lib|issuance)/' },
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
    {
      name: 'no-circular',
      comment:
        'A cycle makes the order of module initialisation, and so the layering, undefined. A cycle ' +
        'closed only by a type import (a session naming the partition that made it) has no run-time order.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
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
