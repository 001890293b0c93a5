/**
 * Property tests: random requests against random valid policies. Whatever the evaluator allows
 * must satisfy every rule of its policy, checked here by an independent oracle (node:net for
 * CIDR blocks, WHATWG URL for URIs, plain string checks for names); whatever it refuses must
 * name at least one rule, and each rule must exist in the policy or be a built-in one.
 */

import { BlockList } from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicConstraints, KeyUsage, KeyUsageFlags } from '@peculiar/asn1-x509';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { formatDuration } from '../../src/lib/duration.ts';
import { POLICY_VIOLATION_CODES } from '../../src/policy/codes.ts';
import { evaluate } from '../../src/policy/evaluate.ts';
import { formatCidr, formatIp } from '../../src/policy/ip.ts';
import { EKU_OIDS } from '../../src/policy/oids.ts';
import type { Evaluation, Policy, Requester, RequestOverrides } from '../../src/policy/types.ts';
import type {
  CertificateTemplate,
  ParsedCsr,
  RawExtension,
  San,
  SubjectAttribute,
} from '../../src/x509/types.ts';
import { aCsr, aPolicy, aPolicyValue, type Patch } from './builders.ts';

const KEYS = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519'];
const DNS_EXACT = ['example.com', 'www.example.com', 'api.example.org', '*.example.com', '*.app.example.com'];
const DNS_BASES = ['example.com', 'app.example.com', 'example.org'];
const DNS_DENY = ['internal.example.com', 'app.example.com', 'secret.example.org'];
const IP_ALLOW = ['192.0.2.0/24', '192.0.2.0/25', '198.51.100.0/24', '2001:db8::/32', '2001:db8:1::/48'];
const IP_DENY = ['192.0.2.0/28', '2001:db8:1::/64', '198.51.100.7/32'];
const URI_RULES = [
  { scheme: 'spiffe', host: 'example.org', path: '/ns/*/sa/*' },
  { scheme: 'spiffe', host: 'example.org', path: '/ns/kube-system/**' },
  { scheme: 'https', host: 'example.com', path: '/users/*' },
  { scheme: 'https', host: 'example.com', port: 8443, path: '/' },
];

const subset = <T>(items: readonly T[], minLength = 0) => fc.subarray([...items], { minLength });

const policyPatch: fc.Arbitrary<Patch> = fc
  .record({
    keys: subset(KEYS, 1),
    min: fc.integer({ min: 60, max: 7_200 }),
    extraDefault: fc.integer({ min: 0, max: 86_400 }),
    extraMax: fc.integer({ min: 0, max: 86_400 * 30 }),
    backdate: fc.integer({ min: 0, max: 600 }),
    cnRule: fc.constantFrom('absent', 'allowed', 'required'),
    cnNotInSans: fc.constantFrom('refuse', 'drop'),
    o: fc.option(
      fc.record({
        fixed: fc.option(fc.constantFrom('Example Corp', 'Acme'), { nil: undefined }),
        required: fc.boolean(),
      }),
      { nil: undefined },
    ),
    ou: fc.option(
      fc.record({
        pattern: fc.option(fc.constant('[a-z]+'), { nil: undefined }),
        multiple: fc.boolean(),
        required: fc.boolean(),
      }),
      { nil: undefined },
    ),
    sansMin: fc.integer({ min: 0, max: 2 }),
    sansMax: fc.integer({ min: 2, max: 6 }),
    dns: fc.option(
      fc.record({
        exact: subset(DNS_EXACT),
        subdomains_of: subset(DNS_BASES),
        deny: fc.oneof({ arbitrary: fc.constant([]), weight: 2 }, { arbitrary: subset(DNS_DENY), weight: 1 }),
        wildcards: fc.boolean(),
        max_labels: fc.option(fc.integer({ min: 4, max: 6 }), { nil: undefined }),
        max: fc.option(fc.integer({ min: 1, max: 2 }), { nil: undefined }),
      }),
      { nil: undefined },
    ),
    ip: fc.option(
      fc.record({
        allow: subset(IP_ALLOW),
        deny: fc.oneof({ arbitrary: fc.constant([]), weight: 2 }, { arbitrary: subset(IP_DENY), weight: 1 }),
      }),
      { nil: undefined },
    ),
    email: fc.option(
      fc.record({
        allow: fc.record({
          exact: subset(['bob@example.net']),
          domains: subset(['example.com', 'example.org']),
        }),
        deny: fc.record({ exact: subset(['root@example.com']), domains: subset(['example.org']) }),
      }),
      { nil: undefined },
    ),
    uri: fc.option(fc.record({ allow: subset(URI_RULES), deny: subset(URI_RULES) }), { nil: undefined }),
    passthrough: subset(['1.2.3.4']),
    others: fc.constantFrom('refuse', 'ignore'),
    keyUsage: fc.oneof(
      { arbitrary: fc.constant(['digitalSignature', 'keyEncipherment']), weight: 3 },
      { arbitrary: subset(['digitalSignature', 'keyEncipherment', 'keyAgreement'], 1), weight: 1 },
    ),
    eku: subset(['serverAuth', 'clientAuth'], 1),
    overrides: fc.record({ sans: fc.boolean(), validity: fc.boolean() }),
  })
  .map((p) => {
    const attributes: Record<string, unknown> = {};
    if (p.cnRule !== 'absent')
      attributes.CN = { required: p.cnRule === 'required' && p.cnNotInSans === 'refuse' };
    if (p.o)
      attributes.O =
        p.o.fixed === undefined ? { required: p.o.required } : { fixed: p.o.fixed, required: p.o.required };
    if (p.ou)
      attributes.OU =
        p.ou.pattern === undefined ? { multiple: p.ou.multiple, required: p.ou.required } : p.ou;
    const dns = p.dns && {
      ...p.dns,
      // Entries longer than max_labels would make the policy invalid; leave them out.
      allow: {
        exact: p.dns.exact.filter(
          (n) =>
            (p.dns!.wildcards || !n.startsWith('*')) && n.split('.').length <= (p.dns!.max_labels ?? 127),
        ),
        subdomains_of: p.dns.subdomains_of.filter((n) => n.split('.').length < (p.dns!.max_labels ?? 127)),
      },
      exact: undefined,
      subdomains_of: undefined,
    };
    const sans: Record<string, unknown> = {
      min: p.sansMin,
      max: p.sansMax,
      dns,
      ip: p.ip,
      email: p.email,
      uri: p.uri,
    };
    if (!p.dns && !p.ip && !p.email && !p.uri) sans.min = 0;
    return {
      validity: {
        min: `PT${p.min}S`,
        default: `PT${p.min + p.extraDefault}S`,
        max: `PT${p.min + p.extraDefault + p.extraMax}S`,
        backdate: `PT${p.backdate}S`,
      },
      key_algorithms: p.keys,
      subject: { attributes: { ...attributes, CN: attributes.CN }, cn_not_in_sans: p.cnNotInSans },
      sans: { ...sans, dns: sans.dns ?? undefined },
      extensions: { passthrough: p.passthrough, others: p.others },
      key_usage: p.keyUsage,
      extended_key_usage: p.eku,
      overrides: p.overrides,
    } as Patch;
  });

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?$/);
const dnsName = fc.oneof(
  fc.constantFrom(
    'example.com',
    'www.example.com',
    'WWW.Example.com',
    '*.example.com',
    '*.app.example.com',
    '*.com',
    'a*.example.com',
    '*.*.example.com',
    'example.com.',
    'internal.example.com',
    'x.internal.example.com',
    'example.com.evil.net',
    'evilexample.com',
    'xn--bcher-kva.example.com',
    'xn--abc.example.com',
    'bücher.example.com',
    '192.0.2.1',
    'api.example.org',
    'secret.example.org',
    'a.b.c.d.e.example.com',
  ),
  fc.tuple(label, fc.constantFrom(...DNS_BASES, 'example.net')).map(([l, base]) => `${l}.${base}`),
  fc.tuple(label, label, fc.constantFrom(...DNS_BASES)).map(([a, b, base]) => `${a}.${b}.${base}`),
  fc.tuple(label, fc.constantFrom(...DNS_BASES)).map(([l, base]) => `*.${l}.${base}`),
);
const ipAddress = fc.oneof(
  fc.integer({ min: 0, max: 255 }).map((n) => `192.0.2.${n}`),
  fc.integer({ min: 0, max: 255 }).map((n) => `198.51.100.${n}`),
  fc.integer({ min: 0, max: 255 }).map((n) => `::ffff:192.0.2.${n}`),
  fc
    .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffff }))
    .map(([a, b]) => `2001:db8:${a}::${b.toString(16)}`),
  fc.constantFrom('10.0.0.1', '192.0.2.010', 'fe80::1%eth0', '2001:db9::1', '::', '0.0.0.0'),
);
const emailAddress = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('alice', 'bob', 'root', 'Alice.S'),
      fc.constantFrom('example.com', 'EXAMPLE.com', 'example.org', 'example.net', 'mail.example.com'),
    )
    .map(([l, d]) => `${l}@${d}`),
  fc.constantFrom(
    'alice@example.com\r\nBcc: x@example.net',
    '"alice"@example.com',
    'alice',
    'alice@example.com.',
  ),
);
const uriValue = fc.oneof(
  fc
    .tuple(fc.constantFrom('default', 'kube-system', 'a'), label)
    .map(([ns, sa]) => `spiffe://example.org/ns/${ns}/sa/${sa}`),
  fc.constantFrom(
    'spiffe://example.org/ns/kube-system/sa/x/y',
    'spiffe://example.net/ns/a/sa/b',
    'https://example.com/users/alice',
    'https://example.com:8443/',
    'https://example.com:8443',
    'https://alice@example.com/users/alice',
    'https://example.com/users/alice#x',
    'https://example.com/users/al ice',
    'HTTPS://EXAMPLE.com/users/bob',
    'spiffe://example.org/ns/kube%2Dsystem/sa/x',
  ),
);
const san: fc.Arbitrary<San> = fc.oneof(
  dnsName.map((value) => ({ type: 'dns' as const, value })),
  ipAddress.map((value) => ({ type: 'ip' as const, value })),
  emailAddress.map((value) => ({ type: 'email' as const, value })),
  uriValue.map((value) => ({ type: 'uri' as const, value })),
);

const ext = (oid: string, value: ArrayBuffer | Uint8Array): RawExtension => ({
  oid,
  critical: false,
  value: new Uint8Array(value),
});
const extension = fc.constantFrom(
  ext('2.5.29.19', AsnConvert.serialize(new BasicConstraints({ cA: true }))),
  ext('2.5.29.19', AsnConvert.serialize(new BasicConstraints({ cA: false }))),
  ext('2.5.29.15', AsnConvert.serialize(new KeyUsage(KeyUsageFlags.digitalSignature))),
  ext('2.5.29.15', AsnConvert.serialize(new KeyUsage(KeyUsageFlags.keyCertSign))),
  ext('1.2.3.4', new Uint8Array([5, 0])),
  ext('1.2.3.5', new Uint8Array([5, 0])),
);

interface Request {
  csr: ParsedCsr;
  overrides?: RequestOverrides;
  requester: Requester;
}

/**
 * SANs built from the policy's own rules: ones it should allow (so that a fair share of requests
 * is allowed) and near misses that differ from an allowed name in one way that matters.
 */
function likelySans(policy: Policy): { out: fc.Arbitrary<San>[]; near: fc.Arbitrary<San>[] } {
  const out: fc.Arbitrary<San>[] = [];
  const near: fc.Arbitrary<San>[] = [];
  const { dns, ip, email, uri } = policy.sans;
  if (dns) {
    for (const name of dns.allow.exact) out.push(fc.constant({ type: 'dns', value: name }));
    for (const parent of dns.allow.subdomainsOf) {
      near.push(fc.constant({ type: 'dns', value: parent })); // the parent itself is not below itself
      out.push(label.map((l) => ({ type: 'dns', value: `${l}.${parent}` })));
      out.push(label.map((l) => ({ type: 'dns', value: `*.${l}.${parent}` })));
      near.push(label.map((l) => ({ type: 'dns', value: `${l}.b.c.${parent}` }))); // max_labels
      near.push(fc.constant({ type: 'dns', value: `${parent}.evil.net` })); // a suffix, not a parent
    }
  }
  if (ip) {
    for (const block of ip.allow) {
      out.push(
        fc.integer({ min: 0, max: 127 }).map((n) => {
          const bytes = block.bytes.slice();
          bytes[bytes.length - 1] = n;
          return { type: 'ip', value: formatIp({ version: block.version, bytes }) };
        }),
      );
    }
  }
  if (email) {
    for (const address of email.allow.exact) out.push(fc.constant({ type: 'email', value: address }));
    for (const domain of email.allow.domains) {
      out.push(
        fc.constantFrom('alice', 'root', 'Bob.S').map((l) => ({ type: 'email', value: `${l}@${domain}` })),
      );
      near.push(fc.constant({ type: 'email', value: `alice@mail.${domain}` })); // a subdomain
    }
  }
  if (uri) {
    for (const rule of uri.allow) {
      out.push(
        fc.tuple(label, label).map(([a, b]) => {
          const path = rule.path.segments
            .map((seg) => (seg === '*' ? a : seg === '**' ? `${a}/${b}` : seg))
            .join('/');
          const port = rule.port === undefined ? '' : `:${rule.port}`;
          return { type: 'uri', value: `${rule.scheme}://${rule.host}${port}${path ? `/${path}` : ''}` };
        }),
      );
      if (rule.scheme !== 'spiffe') {
        // Near misses: the same URI with the port changed.
        const port = rule.port === undefined ? ':8080' : '';
        near.push(fc.constant({ type: 'uri', value: `${rule.scheme}://${rule.host}${port}/users/x` }));
        near.push(fc.constant({ type: 'uri', value: `${rule.scheme}://${rule.host}${port}` }));
      }
    }
  }
  return { out, near };
}

function requestFor(policy: Policy): fc.Arbitrary<Request> {
  const { out: likely, near } = likelySans(policy);
  const sanChoice = fc.oneof(
    ...(likely.length ? [{ arbitrary: fc.oneof(...likely), weight: 10 }] : []),
    ...(near.length ? [{ arbitrary: fc.oneof(...near), weight: 1 }] : []),
    { arbitrary: san, weight: 1 },
  );
  const fixed = Object.entries(policy.subject.attributes).flatMap(([type, rule]) =>
    rule?.fixed ? [{ type, value: rule.fixed } as SubjectAttribute] : [],
  );
  return fc
    .record({
      keyAlgorithm: fc.oneof(
        { arbitrary: fc.constantFrom(...policy.keyAlgorithms), weight: 12 },
        { arbitrary: fc.constantFrom(...KEYS, 'rsa-1024'), weight: 1 },
      ),
      sans: fc.oneof(
        {
          arbitrary: fc.array(sanChoice, { minLength: policy.sans.min, maxLength: policy.sans.min + 1 }),
          weight: 3,
        },
        { arbitrary: fc.array(sanChoice, { maxLength: policy.sans.max + 1 }), weight: 1 },
      ),
      cn: fc.constantFrom('none', 'none', 'san', 'san', 'san', 'other'),
      other: rarely(fc.constantFrom(...SUBJECT_NOISE)),
      ou: (policy.subject.attributes.OU ? sometimes : rarely)(mostly('ops', 'Ops Team')),
      o: (policy.subject.attributes.O ? sometimes : rarely)(
        mostly(policy.subject.attributes.O?.fixed ?? 'Acme', 'Evil'),
      ),
      fillRequired: fc.oneof(
        { arbitrary: fc.constant(true), weight: 5 },
        { arbitrary: fc.constant(false), weight: 1 },
      ),
      keepFixed: fc.boolean(),
      extensions: fc.oneof(
        { arbitrary: fc.constant<RawExtension[]>([]), weight: 9 },
        { arbitrary: fc.uniqueArray(extension, { maxLength: 3, selector: (e) => e.oid }), weight: 1 },
      ),
      eku: rarely(subset([...Object.values(EKU_OIDS).slice(0, 3), '2.5.29.37.0'])),
      overrideSans: (policy.overrides.sans ? sometimes : rarely)(fc.array(sanChoice, { maxLength: 3 })),
      overrideValidity: (policy.overrides.validity ? sometimes : rarely)(
        fc.oneof(
          { arbitrary: fc.constantFrom('P1M', 'junk', 'PT0S'), weight: 1 },
          {
            arbitrary: fc
              .constantFrom(
                policy.validity.minSeconds - 1,
                policy.validity.minSeconds,
                policy.validity.defaultSeconds,
                policy.validity.defaultSeconds,
                policy.validity.maxSeconds,
                policy.validity.maxSeconds,
                policy.validity.maxSeconds + 1,
                policy.validity.maxSeconds * 2 - 1,
              )
              .map((seconds) => formatDuration(Math.max(0, seconds))),
            weight: 4,
          },
        ),
      ),
      policies: fc.constantFrom<Requester['policies']>(
        '*',
        '*',
        '*',
        '*',
        '*',
        '*',
        ['test'],
        ['test', 'x'],
        ['other'],
      ),
      cnOther: fc.oneof(dnsName, fc.constantFrom('alice', 'www.example.com\nx')),
      cnAnyway: fc.boolean(),
      caFlag: mostly(false, true),
    })
    .map((r) => {
      const subject: SubjectAttribute[] = [];
      const source = r.overrideSans && policy.overrides.sans ? r.overrideSans : r.sans;
      const cnAllowed = policy.subject.attributes.CN !== undefined;
      const cn =
        r.cn === 'other'
          ? r.cnOther
          : r.cn === 'san' && (cnAllowed || r.cnAnyway)
            ? source[0]?.value
            : undefined;
      if (cn !== undefined) subject.push({ type: 'CN', value: cn });
      if (r.keepFixed) subject.push(...fixed);
      if (r.ou !== undefined) subject.push({ type: 'OU', value: r.ou });
      if (r.o !== undefined && !subject.some((a) => a.type === 'O')) subject.push({ type: 'O', value: r.o });
      if (r.fillRequired) {
        for (const [type, rule] of Object.entries(policy.subject.attributes)) {
          if (
            rule?.required &&
            rule.fixed === undefined &&
            type !== 'CN' &&
            !subject.some((a) => a.type === type)
          ) {
            subject.push({
              type: type as SubjectAttribute['type'],
              value: type === 'OU' ? 'ops' : 'Example Corp',
            });
          }
        }
      }
      if (r.other) subject.push(r.other);
      const csr = aCsr({
        keyAlgorithm: r.keyAlgorithm,
        sans: r.sans,
        subject,
        extensions: r.extensions,
        ...(r.caFlag ||
        r.extensions.some((e) => e.oid === '2.5.29.19' && AsnConvert.parse(e.value, BasicConstraints).cA)
          ? { requestedCa: true }
          : {}),
        ...(r.eku ? { requestedEku: r.eku } : {}),
      });
      const overrides: RequestOverrides = {
        ...(r.overrideSans ? { sans: r.overrideSans } : {}),
        ...(r.overrideValidity ? { validity: r.overrideValidity } : {}),
      };
      return {
        csr,
        requester: { id: 'key-prop', policies: r.policies },
        ...(Object.keys(overrides).length ? { overrides } : {}),
      };
    });
}

/** The first value four times in five. */
const mostly = <T>(good: T, bad: T): fc.Arbitrary<T> =>
  fc.oneof({ arbitrary: fc.constant(good), weight: 4 }, { arbitrary: fc.constant(bad), weight: 1 });

/** Half the time undefined. */
const sometimes = <T>(arbitrary: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.option(arbitrary, { nil: undefined });

/** Mostly undefined: a request usually leaves optional things out. */
const rarely = <T>(arbitrary: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.oneof({ arbitrary: fc.constant(undefined), weight: 9 }, { arbitrary, weight: 1 });

const SUBJECT_NOISE: SubjectAttribute[] = [
  { type: 'O', value: 'Example Corp' },
  { type: 'O', value: 'Acme' },
  { type: 'C', value: 'US' },
  { type: 'L', value: 'Berlin' },
  { type: 'OU', value: '' },
];

// ---- The oracle: does a template satisfy every rule of its policy? ----

function blockList(
  blocks: Policy['sans']['ip'] extends infer T ? (T extends { allow: infer A } ? A : never) : never,
) {
  const list = new BlockList();
  for (const block of blocks) {
    const [address, prefix] = formatCidr(block).split('/');
    list.addSubnet(address!, Number(prefix), block.version === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

function ipInList(list: BlockList, value: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(value);
  if (mapped) return list.check(mapped[1]!, 'ipv4');
  return value.includes(':') ? list.check(value, 'ipv6') : list.check(value, 'ipv4');
}

function dnsAllowed(policy: Policy, name: string): string | undefined {
  const rules = policy.sans.dns;
  if (!rules) return 'no dns section';
  if (name !== name.toLowerCase() || name.endsWith('.') || !/^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(name))
    return 'not normalised';
  const wildcard = name.startsWith('*.');
  const base = wildcard ? name.slice(2) : name;
  if (wildcard && !rules.wildcards) return 'wildcard';
  if (name.split('.').length > rules.maxLabels) return 'labels';
  for (const denied of rules.deny) {
    if (base === denied || base.endsWith(`.${denied}`)) return `denied by ${denied}`;
    if (wildcard && denied.endsWith(`.${base}`) && denied.split('.').length === base.split('.').length + 1)
      return `covers ${denied}`;
  }
  if (rules.allow.exact.includes(name)) return undefined;
  const under = rules.allow.subdomainsOf.some((s) =>
    wildcard ? base === s || base.endsWith(`.${s}`) : name.endsWith(`.${s}`),
  );
  return under ? undefined : 'not allowed';
}

function uriMatches(rules: NonNullable<Policy['sans']['uri']>['allow'], value: string): boolean {
  const url = new URL(value);
  return rules.some((rule) => {
    const pattern =
      rule.path.text === '/'
        ? '/?'
        : rule.path.text.replaceAll('**', '\u0000').replaceAll('*', '[^/]+').replaceAll('\u0000', '.+');
    const path = url.pathname === '/' && !value.endsWith('/') ? '' : url.pathname;
    return (
      url.protocol === `${rule.scheme}:` &&
      url.hostname === rule.host &&
      (url.port === '' ? undefined : Number(url.port)) === rule.port &&
      new RegExp(`^${pattern}$`).test(path)
    );
  });
}

function violatedRules(policy: Policy, template: CertificateTemplate, req: Request): string[] {
  const problems: string[] = [];
  const fail = (what: string) => problems.push(what);
  if (req.requester.policies !== '*' && !req.requester.policies.includes(policy.name)) fail('requester');
  if (template.policy !== policy.name || template.issuer !== policy.issuer) fail('policy/issuer');
  if (!policy.keyAlgorithms.includes(template.keyAlgorithm)) fail('key algorithm');
  const v = template.validitySeconds;
  if (v < policy.validity.minSeconds || v > policy.validity.maxSeconds) fail('validity bounds');
  if (req.overrides?.validity === undefined && v !== policy.validity.defaultSeconds) fail('validity default');
  if (template.backdateSeconds !== policy.validity.backdateSeconds) fail('backdate');
  const sans = template.sans;
  if (sans.length < policy.sans.min || sans.length > policy.sans.max) fail('san count');
  if (new Set(sans.map((s) => `${s.type}:${s.value.replace(/^::ffff:/, '')}`)).size !== sans.length)
    fail('duplicates');
  for (const type of ['dns', 'ip', 'email', 'uri'] as const) {
    const max = policy.sans[type]?.max;
    if (max !== undefined && sans.filter((s) => s.type === type).length > max) fail(`${type} count`);
  }
  const source = req.overrides?.sans ?? req.csr.sans;
  if (sans.length !== source.length) fail('san list changed');
  for (const s of sans) {
    if (s.type === 'dns') {
      const why = dnsAllowed(policy, s.value);
      if (why) fail(`dns ${s.value}: ${why}`);
    } else if (s.type === 'ip') {
      const rules = policy.sans.ip;
      if (!rules || !ipInList(blockList(rules.allow), s.value) || ipInList(blockList(rules.deny), s.value))
        fail(`ip ${s.value}`);
    } else if (s.type === 'email') {
      const rules = policy.sans.email;
      const [local, domain] = s.value.split('@');
      const ok =
        rules &&
        /^[A-Za-z0-9.'+_-]+$/.test(local ?? '') &&
        domain === domain?.toLowerCase() &&
        (rules.allow.exact.includes(s.value) || rules.allow.domains.includes(domain!)) &&
        !rules.deny.exact.includes(s.value) &&
        !rules.deny.domains.includes(domain!);
      if (!ok) fail(`email ${s.value}`);
    } else if (s.type === 'uri') {
      const rules = policy.sans.uri;
      const url = new URL(s.value);
      if (!rules || url.username || url.password || url.hash || url.search || /\s/.test(s.value))
        fail(`uri ${s.value}`);
      else if (!uriMatches(rules.allow, s.value) || uriMatches(rules.deny, s.value)) fail(`uri ${s.value}`);
    }
  }
  const counts = new Map<string, number>();
  for (const { type, value } of template.subject) {
    counts.set(type, (counts.get(type) ?? 0) + 1);
    const rule = policy.subject.attributes[type];
    if (!rule) fail(`subject ${type} not allowed`);
    if (rule?.fixed !== undefined && value !== rule.fixed) fail(`subject ${type} fixed`);
    if (rule?.pattern && !rule.pattern.test(value)) fail(`subject ${type} pattern`);
    if (!value || [...value].some((c) => c.charCodeAt(0) < 0x20)) fail(`subject ${type} value`);
    if (type === 'CN' && !sans.some((s) => s.value === value)) fail('CN not a SAN');
  }
  for (const [type, rule] of Object.entries(policy.subject.attributes)) {
    if (rule?.required && !counts.get(type)) fail(`subject ${type} required`);
    if (!rule?.multiple && (counts.get(type) ?? 0) > 1) fail(`subject ${type} repeated`);
  }
  if (template.keyUsage.length === 0 || template.keyUsage.some((k) => !policy.keyUsage.includes(k)))
    fail('key usage');
  // RFC 5480 §3, RFC 8410 §5, RFC 3279 §2.3.1: what each key type may be used for.
  const forbidden: Record<string, string[]> = {
    ecdsa: ['keyEncipherment', 'dataEncipherment'],
    ed25519: ['keyEncipherment', 'dataEncipherment', 'keyAgreement'],
    rsa: ['keyAgreement'],
  };
  const family = template.keyAlgorithm.split('-')[0]!;
  if (template.keyUsage.some((k) => forbidden[family]?.includes(k))) fail('key usage for key type');
  if (JSON.stringify(template.extendedKeyUsage) !== JSON.stringify(policy.extendedKeyUsage)) fail('eku');
  const policyEkuOids = policy.extendedKeyUsage.map((n) => (EKU_OIDS as Record<string, string>)[n] ?? n);
  for (const oid of req.csr.requestedEku ?? [])
    if (!policyEkuOids.includes(oid)) fail(`requested eku ${oid}`);
  if (req.csr.requestedCa) fail('CA requested');
  for (const e of req.csr.extensions) {
    if (e.oid === '2.5.29.15' && AsnConvert.parse(e.value, KeyUsage).toNumber() & KeyUsageFlags.keyCertSign)
      fail('keyCertSign');
    const handled = ['2.5.29.14', '2.5.29.15', '2.5.29.19', '2.5.29.37'].includes(e.oid);
    if (!handled && !policy.extensions.passthrough.includes(e.oid) && policy.extensions.others === 'refuse')
      fail(`extension ${e.oid}`);
  }
  for (const e of template.passthroughExtensions)
    if (!policy.extensions.passthrough.includes(e.oid)) fail(`passthrough ${e.oid}`);
  if (req.overrides?.sans && !policy.overrides.sans) fail('sans override');
  if (req.overrides?.validity && !policy.overrides.validity) fail('validity override');
  return problems;
}

/** Whether a violation's rule is a key path that exists in the policy document, or a built-in. */
function ruleExists(policy: Policy, rule: string): boolean {
  if (rule.startsWith('builtin.') || rule === 'requester.policies') return true;
  let node: unknown = policy.document;
  for (const part of rule.split(/\.|\[(\d+)\]/).filter((p) => p !== undefined && p !== '')) {
    if (node === null || typeof node !== 'object' || !(part in node)) return false;
    node = (node as Record<string, unknown>)[part];
  }
  return node !== undefined;
}

describe('random requests against random valid policies', () => {
  const cases = policyPatch
    .map((patch) => aPolicyValue(patch))
    .chain((policy) => requestFor(policy).map((req) => ({ policy, req })));
  let allowedCount = 0;
  let refusedCount = 0;
  const tally = new Map<string, number>();

  test('every template the evaluator allows satisfies every rule of its policy; every refusal names its rules', () => {
    fc.assert(
      fc.property(cases, ({ policy, req }) => {
        const result: Evaluation = evaluate({ policy, ...req });
        expect(evaluate({ policy, ...req })).toEqual(result); // pure: same input, same answer
        if (result.allowed) {
          allowedCount++;
          expect(violatedRules(policy, result.template, req)).toEqual([]);
        } else {
          refusedCount++;
          for (const v of result.violations) tally.set(v.code, (tally.get(v.code) ?? 0) + 1);
          expect(result.violations.length).toBeGreaterThan(0);
          for (const violation of result.violations) {
            expect(POLICY_VIOLATION_CODES).toContain(violation.code);
            expect(violation.message.length).toBeGreaterThan(10);
            expect(ruleExists(policy, violation.rule), `rule ${violation.rule} exists`).toBe(true);
          }
        }
      }),
      { numRuns: 600 },
    );
    // A generator that only ever produced refusals would make the first half vacuous.
    // (Measured: about 40-65 of 600 allowed, and 30 of the 31 codes seen.)
    expect(allowedCount).toBeGreaterThan(25);
    expect(refusedCount).toBeGreaterThan(300);
    // And the refusals cover most of the codes, so the second half is not vacuous either.
    expect(tally.size).toBeGreaterThan(POLICY_VIOLATION_CODES.length - 6);
  });

  test('the same holds for clean requests that differ from an allowed one in a single respect', () => {
    const clean = policyPatch
      .map((patch) => aPolicyValue(patch))
      .chain((policy) => {
        const { out, near } = likelySans(policy);
        const names = out.length
          ? fc.oneof(
              { arbitrary: fc.oneof(...out), weight: 6 },
              ...(near.length ? [{ arbitrary: fc.oneof(...near), weight: 1 }] : []),
            )
          : san;
        return fc.record({
          policy: fc.constant(policy),
          sans: fc.array(names, {
            minLength: Math.max(1, policy.sans.min),
            maxLength: Math.max(1, policy.sans.min) + 1,
          }),
          keyAlgorithm: fc.oneof(
            { arbitrary: fc.constantFrom(...policy.keyAlgorithms), weight: 6 },
            { arbitrary: fc.constantFrom('rsa-2048', 'ed25519'), weight: 1 },
          ),
          extensions: fc.oneof(
            { arbitrary: fc.constant<RawExtension[]>([]), weight: 3 },
            {
              arbitrary: fc.uniqueArray(extension, { minLength: 1, maxLength: 2, selector: (e) => e.oid }),
              weight: 1,
            },
          ),
          ous: fc.constantFrom(['ops'], ['ops'], ['ops', 'dev']),
          cnFromSan: fc.boolean(),
        });
      })
      .map(({ policy, sans, keyAlgorithm, extensions, ous, cnFromSan }) => {
        const subject: SubjectAttribute[] = [];
        const cnRule = policy.subject.attributes.CN;
        if (cnRule && sans[0] && (cnFromSan || cnRule.required))
          subject.push({ type: 'CN', value: sans[0].value });
        for (const [type, rule] of Object.entries(policy.subject.attributes)) {
          if (rule?.fixed) subject.push({ type: type as SubjectAttribute['type'], value: rule.fixed });
          else if (rule?.required && type === 'O') subject.push({ type: 'O', value: 'Example Corp' });
        }
        if (policy.subject.attributes.OU) for (const value of ous) subject.push({ type: 'OU', value });
        const cA = extensions.some(
          (e) => e.oid === '2.5.29.19' && AsnConvert.parse(e.value, BasicConstraints).cA,
        );
        const csr = aCsr({ sans, subject, keyAlgorithm, extensions, ...(cA ? { requestedCa: true } : {}) });
        return { policy, req: { csr, requester: { id: 'key-clean', policies: '*' as const } } };
      });
    let allowed = 0;
    fc.assert(
      fc.property(clean, ({ policy, req }) => {
        const result = evaluate({ policy, ...req });
        if (result.allowed) {
          allowed++;
          expect(violatedRules(policy, result.template, req)).toEqual([]);
        } else {
          for (const violation of result.violations) {
            expect(ruleExists(policy, violation.rule)).toBe(true);
          }
        }
      }),
      { numRuns: 600 },
    );
    expect(allowed).toBeGreaterThan(120); // measured: about 200 of 600
  });

  test('a request the oracle finds fault with is never allowed', () => {
    // The converse direction on hand-picked near-misses: each must be refused.
    const policy = aPolicy({
      sans: {
        dns: { deny: ['internal.example.com'], wildcards: true },
        ip: { allow: ['192.0.2.0/24'], deny: ['192.0.2.0/28'] },
      },
    });
    for (const bad of ['*.example.com', 'internal.example.com', 'example.com.', 'EXAMPLE.com.evil.net']) {
      expect(
        evaluate({
          policy,
          csr: aCsr({ subject: [], sans: [{ type: 'dns', value: bad }] }),
          requester: { id: 'k', policies: '*' },
        }).allowed,
      ).toBe(false);
    }
    for (const bad of ['192.0.2.1', '::ffff:192.0.2.15', '198.51.100.1']) {
      expect(
        evaluate({
          policy,
          csr: aCsr({ subject: [], sans: [{ type: 'ip', value: bad }] }),
          requester: { id: 'k', policies: '*' },
        }).allowed,
      ).toBe(false);
    }
  });
});
