/**
 * Signatures per second through the partition process, against Node's in-process, single-threaded
 * crypto.sign with the same key type, in the same run (issue #2). Run:
 *
 *   node --import tsx bench/hsm-sign.ts [--seconds 1] [--in-flight 128] [--rounds 9] [--keys p256,p384,rsa2048,ed25519]
 *     [--p11 auto|on|off] [--softhsm auto|on|off] [--members 1,2,3]
 *
 * The partition is a real `signet hsm serve --ephemeral` child process reached over its Unix
 * socket; the client keeps `--in-flight` signatures pending on one connection. Each round measures
 * in-process then partition for every key type, so a machine busy with something else slows both
 * sides of a ratio alike; medians of the per-round figures are reported.
 *
 * With --p11 (on when Debian's p11-kit-client.so and python3-pykcs11 are installed), the same
 * partition also serves its PKCS#11 socket and a second table compares, for P-256 one signature
 * at a time: the partition protocol with one request in flight, and PyKCS11 on p11-kit-client.so
 * (bench/p11-sign.py: one session, C_SignInit + C_Sign per signature, as libp11 in nginx does).
 *
 * With --softhsm (on when Debian's softhsm2 is installed), two more partition processes serve
 * partition folders (their hash-chained audit log on disk): one emulated, one keeping its keys on a
 * SoftHSM2 token (issue #25: a folder made with --pkcs11-module). Both are measured in the same
 * rounds with the same in-flight count, so the token's cost is the difference between those two.
 *
 * With --members (issue #22; default 1,2,3, 'off' to skip), a third table: P-256 through the CA's
 * cluster client (PartitionCluster) over 1, 2 and 3 partition processes, each on its own socket,
 * the signatures spread by fewest in flight; partition CPU is the sum over the members.
 */
import 'reflect-metadata';
import { execFile, spawnSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { RemotePartition } from '../src/hsm/client.ts';
import { PartitionCluster } from '../src/hsm/cluster.ts';
import { initPartition } from '../src/hsm/custody/index.ts';
import { writePkcs11Spec } from '../src/hsm/pkcs11/folder.ts';
import { type PartitionProcess, startPartitionProcess, temporarySocketPath } from '../src/hsm/process.ts';
import type { KeyAlgorithm, SignMechanism } from '../src/hsm/types.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '1' },
    'in-flight': { type: 'string', default: '128' },
    rounds: { type: 'string', default: '9' },
    keys: { type: 'string', default: 'p256,p384,rsa2048,ed25519' },
    p11: { type: 'string', default: 'auto' },
    softhsm: { type: 'string', default: 'auto' },
    members: { type: 'string', default: '1,2,3' },
  },
});
const seconds = Number(values.seconds);
const inFlight = Number(values['in-flight']);
const rounds = Number(values.rounds);

interface Case {
  name: string;
  algorithm: KeyAlgorithm;
  mechanism: SignMechanism;
  local: () => KeyObject;
  localSign: (key: KeyObject, data: Buffer) => Buffer;
}

const CASES: Record<string, Case> = {
  p256: {
    name: 'P-256',
    algorithm: 'ecdsa-p256',
    mechanism: 'ecdsa-sha256',
    local: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
    localSign: (key, data) => sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }),
  },
  p384: {
    name: 'P-384',
    algorithm: 'ecdsa-p384',
    mechanism: 'ecdsa-sha384',
    local: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey,
    localSign: (key, data) => sign('sha384', data, { key, dsaEncoding: 'ieee-p1363' }),
  },
  rsa2048: {
    name: 'RSA-2048',
    algorithm: 'rsa-2048',
    mechanism: 'rsa-pkcs1-sha256',
    local: () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
    localSign: (key, data) => sign('sha256', data, key),
  },
  ed25519: {
    name: 'Ed25519',
    algorithm: 'ed25519',
    mechanism: 'ed25519',
    local: () => generateKeyPairSync('ed25519').privateKey,
    localSign: (key, data) => sign(null, data, key),
  },
};

const selected = values.keys.split(',').map((k) => {
  const c = CASES[k.trim()];
  if (!c) throw new Error(`unknown key '${k}'; choose from ${Object.keys(CASES).join(', ')}`);
  return c;
});

// A to-be-signed certificate is a few hundred octets; sign something of that size.
const tbs = Buffer.alloc(400, 0x42);

/** CPU time (user + system) of another process in microseconds, from /proc (Linux). */
function processCpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
}

const ownCpuMicros = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

interface Measure {
  rate: number;
  /** CPU microseconds per signature in this process (and in the partition process). */
  cpu: number;
  partitionCpu?: number;
}

function inProcess(key: KeyObject, c: Case): Measure {
  const cpu0 = ownCpuMicros();
  const started = performance.now();
  const end = started + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 16; i++) c.localSign(key, tbs);
    n += 16;
  }
  return { rate: n / ((performance.now() - started) / 1000), cpu: (ownCpuMicros() - cpu0) / n };
}

async function throughPartition(
  client: RemotePartition,
  pid: number,
  label: string,
  c: Case,
): Promise<Measure> {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const worker = async () => {
    while (performance.now() < end) {
      await client.sign({ key: { label }, mechanism: c.mechanism, purpose: 'certificate', data: tbs });
      n++;
    }
  };
  const cpu0 = ownCpuMicros();
  const partitionCpu0 = processCpuMicros(pid);
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  return {
    rate: n / ((performance.now() - started) / 1000),
    cpu: (ownCpuMicros() - cpu0) / n,
    partitionCpu: (processCpuMicros(pid) - partitionCpu0) / n,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const { socketPath, cleanup } = await temporarySocketPath();
const users = [
  { name: 'officer', role: 'officer' as const, pin: 'bench-officer-pin' },
  { name: 'ca', role: 'user' as const, pin: 'bench-user-pin-1' },
];
const P11_MODULE = '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';
const PYTHON = '/usr/bin/python3';
const canP11 = existsSync(P11_MODULE) && existsSync('/usr/lib/python3/dist-packages/PyKCS11/__init__.py');
if (values.p11 === 'on' && !canP11) throw new Error('--p11 on needs p11-kit-modules and python3-pykcs11');
const withP11 = values.p11 === 'on' || (values.p11 === 'auto' && canP11);
const p11Socket = join(socketPath, '..', 'p11.sock');
const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const canSoftHsm = existsSync(SOFTHSM_MODULE) && spawnSync('softhsm2-util', ['--version']).status === 0;
if (values.softhsm === 'on' && !canSoftHsm) throw new Error('--softhsm on needs softhsm2');
const withSoftHsm = values.softhsm === 'on' || (values.softhsm === 'auto' && canSoftHsm);

/**
 * A partition folder served by `signet hsm serve --dir DIR`, unsealed, with a client logged in as
 * 'ca'; with `token`, its keys live on a fresh SoftHSM2 token in a temporary folder.
 */
async function startFolderPartition(token: boolean): Promise<{
  process: PartitionProcess;
  officer: RemotePartition;
  client: RemotePartition;
  stop(): Promise<void>;
}> {
  const dir = mkdtempSync(join(tmpdir(), token ? 'bench-softhsm-' : 'bench-folder-'));
  const conf = join(dir, 'softhsm2.conf');
  mkdirSync(join(dir, 'tokens'));
  writeFileSync(
    conf,
    `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  if (token) {
    const init = spawnSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', 'bench', '--pin', 'bench-token-pin', '--so-pin', 'bench-so-pin'],
      { env, encoding: 'utf8' },
    );
    if (init.status !== 0) throw new Error(`softhsm2-util: ${init.stderr}`);
    writeFileSync(join(dir, 'token-pin'), 'bench-token-pin\n', { mode: 0o600 });
  }
  let secret = '';
  await initPartition({
    dir: join(dir, 'partition'),
    name: 'bench-softhsm',
    sealing: { kind: 'secret' },
    officerPin: users[0]!.pin,
    userPin: users[1]!.pin,
    saveSecrets: async (secrets) => {
      secret = secrets.secret!;
    },
  });
  if (token) await writePkcs11Spec(join(dir, 'partition'), { module: SOFTHSM_MODULE, tokenLabel: 'bench' });
  const child = await startPartitionProcess({
    dir: join(dir, 'partition'),
    socketPath: join(dir, 'p.sock'),
    ...(token ? { args: ['--token-pin-file', join(dir, 'token-pin')] } : {}),
    env,
  });
  const connect = async (who: (typeof users)[number]) =>
    RemotePartition.connect({
      socketPath: join(dir, 'p.sock'),
      onConnect: async (p) => {
        if ((await p.status()).state === 'sealed')
          await p.unseal({ secret: new Uint8Array(Buffer.from(secret)) });
        await p.login({ user: who.name, pin: who.pin });
      },
    });
  const officer = await connect(users[0]!);
  const client = await connect(users[1]!);
  return {
    process: child,
    officer,
    client,
    async stop() {
      await client.close();
      await officer.close();
      await child.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const softhsm = withSoftHsm ? await startFolderPartition(true) : undefined;
const folder = withSoftHsm ? await startFolderPartition(false) : undefined;
const partition = await startPartitionProcess({
  socketPath,
  name: 'bench',
  ephemeral: { users },
  ...(withP11 ? { args: ['--p11-socket', p11Socket] } : {}),
});
try {
  const officer = await RemotePartition.connect({ socketPath });
  await officer.login({ user: 'officer', pin: users[0]!.pin });
  const client = await RemotePartition.connect({ socketPath });
  await client.login({ user: 'ca', pin: users[1]!.pin });
  const prepared = await Promise.all(
    selected.map(async (c) => {
      const label = `bench-${c.algorithm}`;
      await officer.createKey({ label, algorithm: c.algorithm });
      if (softhsm) await softhsm.officer.createKey({ label, algorithm: c.algorithm });
      if (folder) await folder.officer.createKey({ label, algorithm: c.algorithm });
      return {
        c,
        label,
        local: c.local(),
        local_: [] as Measure[],
        remote: [] as Measure[],
        token: [] as Measure[],
        folder: [] as Measure[],
      };
    }),
  );
  // Warm up both paths (JIT, connection, key caches).
  for (const p of prepared) {
    for (let i = 0; i < 200; i++) p.c.localSign(p.local, tbs);
    await Promise.all(
      Array.from({ length: 200 }, () =>
        client.sign({ key: { label: p.label }, mechanism: p.c.mechanism, purpose: 'certificate', data: tbs }),
      ),
    );
    for (const other of [softhsm, folder]) {
      if (!other) continue;
      await Promise.all(
        Array.from({ length: 200 }, () =>
          other.client.sign({
            key: { label: p.label },
            mechanism: p.c.mechanism,
            purpose: 'certificate',
            data: tbs,
          }),
        ),
      );
    }
  }
  for (let round = 1; round <= rounds; round++) {
    for (const p of prepared) {
      const local = inProcess(p.local, p.c);
      const remote = await throughPartition(client, partition.child.pid!, p.label, p.c);
      p.local_.push(local);
      p.remote.push(remote);
      const token = softhsm
        ? await throughPartition(softhsm.client, softhsm.process.child.pid!, p.label, p.c)
        : undefined;
      if (token) p.token.push(token);
      const onDisk = folder
        ? await throughPartition(folder.client, folder.process.child.pid!, p.label, p.c)
        : undefined;
      if (onDisk) p.folder.push(onDisk);
      console.error(
        `round ${round} ${p.c.name}: in-process ${Math.round(local.rate)}/s (${local.cpu.toFixed(1)} µs CPU each), ` +
          `partition ${Math.round(remote.rate)}/s (${remote.partitionCpu!.toFixed(1)} µs partition + ${remote.cpu.toFixed(1)} µs client CPU each)` +
          (token ? `, SoftHSM2 partition ${Math.round(token.rate)}/s` : '') +
          (onDisk ? `, emulated folder partition ${Math.round(onDisk.rate)}/s` : ''),
      );
    }
  }
  // Medians of per-round ratios: the two runs of a round saw the same machine.
  console.log(`\n${inFlight} in flight, ${seconds} s x ${rounds} rounds; medians`);
  console.log(
    'key         in-process/s  partition/s  ratio | CPU µs per signature: in-process partition client | CPU ratio',
  );
  for (const p of prepared) {
    const ratio = median(p.remote.map((m, i) => m.rate / p.local_[i]!.rate));
    const cpuRatio = median(p.remote.map((m, i) => p.local_[i]!.cpu / m.partitionCpu!));
    const cells = [
      p.c.name.padEnd(10),
      String(Math.round(median(p.local_.map((m) => m.rate)))).padStart(12),
      String(Math.round(median(p.remote.map((m) => m.rate)))).padStart(12),
      `${(ratio * 100).toFixed(0)}%`.padStart(6),
      '|',
      median(p.local_.map((m) => m.cpu))
        .toFixed(1)
        .padStart(32),
      median(p.remote.map((m) => m.partitionCpu!))
        .toFixed(1)
        .padStart(9),
      median(p.remote.map((m) => m.cpu))
        .toFixed(1)
        .padStart(6),
      '|',
      `${(cpuRatio * 100).toFixed(0)}%`.padStart(9),
    ];
    console.log(cells.join(' '));
  }
  if (softhsm) {
    console.log(
      `\nPartition folders (file audit log): emulated keys vs keys on a SoftHSM2 token (same rounds, ${inFlight} in flight; medians)`,
    );
    console.log(
      'key         in-process/s  folder/s  softhsm2/s  softhsm2/in-process  softhsm2/folder | partition CPU µs per signature: folder softhsm2',
    );
    for (const p of prepared) {
      const cells = [
        p.c.name.padEnd(10),
        String(Math.round(median(p.local_.map((m) => m.rate)))).padStart(12),
        String(Math.round(median(p.folder.map((m) => m.rate)))).padStart(9),
        String(Math.round(median(p.token.map((m) => m.rate)))).padStart(11),
        `${(median(p.token.map((m, i) => m.rate / p.local_[i]!.rate)) * 100).toFixed(0)}%`.padStart(20),
        `${(median(p.token.map((m, i) => m.rate / p.folder[i]!.rate)) * 100).toFixed(0)}%`.padStart(16),
        '|',
        median(p.folder.map((m) => m.partitionCpu!))
          .toFixed(1)
          .padStart(38),
        median(p.token.map((m) => m.partitionCpu!))
          .toFixed(1)
          .padStart(9),
      ];
      console.log(cells.join(' '));
    }
  }
  console.log(
    '\nratio: partition/s over in-process/s. CPU ratio: in-process over partition CPU per signature, the\n' +
      'ratio when the partition has a core to itself and the client the other. On a busy machine the\n' +
      'two processes get more CPU share than the one-thread loop (ratio too high) and the partition\n' +
      'wakes up more often for fewer frames (CPU ratio too low).',
  );
  if (values.members !== 'off') await compareMembers(values.members.split(',').map(Number));
  if (withP11) await compareP11(officer, client, partition.child.pid!);
  await client.close();
  await officer.close();
} finally {
  await partition.stop();
  await softhsm?.stop();
  await folder?.stop();
  await cleanup();
}

/**
 * P-256, one signature at a time, through each socket of the same partition: the partition
 * protocol with one request in flight, and PKCS#11 via p11-kit-client.so (PyKCS11, one session,
 * C_SignInit + C_Sign per signature). Both wait for each signature before asking for the next, as
 * one TLS handshake does; both are checked and audited alike inside the partition.
 */
async function compareP11(officer: RemotePartition, client: RemotePartition, pid: number): Promise<void> {
  const run = promisify(execFile);
  await officer.createKey({ label: 'bench-p11', algorithm: 'ecdsa-p256', purposes: ['other'] });
  await officer.createKey({ label: 'bench-native', algorithm: 'ecdsa-p256', purposes: ['certificate'] });
  const native: Measure[] = [];
  const p11: Measure[] = [];
  const script = new URL('./p11-sign.py', import.meta.url).pathname;
  for (let round = 1; round <= rounds; round++) {
    native.push(await throughPartitionOneByOne(client, pid, 'bench-native'));
    const cpu0 = processCpuMicros(pid);
    const { stdout } = await run(PYTHON, [script, P11_MODULE, 'bench-p11', String(seconds)], {
      env: {
        ...process.env,
        P11_KIT_SERVER_ADDRESS: `unix:path=${p11Socket}`,
        SIGNET_BENCH_PIN: users[1]!.pin,
      },
    });
    const result = JSON.parse(stdout) as { signatures: number; seconds: number };
    // The driver's warm-up (200 signatures) is in the partition's CPU figure too.
    p11.push({
      rate: result.signatures / result.seconds,
      cpu: Number.NaN,
      partitionCpu: (processCpuMicros(pid) - cpu0) / (result.signatures + 200),
    });
    console.error(
      `round ${round} P-256 one at a time: partition protocol ${Math.round(native.at(-1)!.rate)}/s, ` +
        `p11-kit-client ${Math.round(p11.at(-1)!.rate)}/s`,
    );
  }
  console.log(`\nP-256, one signature at a time (${seconds} s x ${rounds} rounds; medians)`);
  console.log(
    'path                                              signatures/s | partition CPU µs per signature',
  );
  const row = (name: string, ms: Measure[]) =>
    console.log(
      `${name.padEnd(50)}${String(Math.round(median(ms.map((m) => m.rate)))).padStart(12)} |` +
        `${median(ms.map((m) => m.partitionCpu!))
          .toFixed(1)
          .padStart(10)}`,
    );
  row('partition protocol, 1 in flight (ecdsa-sha256)', native);
  row('PKCS#11 via p11-kit-client, PyKCS11 (CKM_ECDSA)', p11);
}

async function throughPartitionOneByOne(
  client: RemotePartition,
  pid: number,
  label: string,
): Promise<Measure> {
  const request = {
    key: { label },
    mechanism: 'ecdsa-sha256' as const,
    purpose: 'certificate' as const,
    data: tbs,
  };
  for (let i = 0; i < 200; i++) await client.sign(request);
  const cpu0 = ownCpuMicros();
  const partitionCpu0 = processCpuMicros(pid);
  const started = performance.now();
  const end = started + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    await client.sign(request);
    n++;
  }
  return {
    rate: n / ((performance.now() - started) / 1000),
    cpu: (ownCpuMicros() - cpu0) / n,
    partitionCpu: (processCpuMicros(pid) - partitionCpu0) / n,
  };
}

/**
 * P-256 through PartitionCluster over 1..N member processes (issue #22). Each member is its own
 * `signet hsm serve --ephemeral` with a key under one label, as clones hold the same keys.
 */
async function compareMembers(counts: number[]): Promise<void> {
  const c = CASES.p256!;
  const most = Math.max(...counts);
  if (!counts.every((n) => Number.isInteger(n) && n >= 1 && n <= 8))
    throw new Error('--members takes 1 to 8');
  const members: { socket: Awaited<ReturnType<typeof temporarySocketPath>>; child: PartitionProcess }[] = [];
  for (let i = 0; i < most; i++) {
    const socket = await temporarySocketPath();
    const child = await startPartitionProcess({
      socketPath: socket.socketPath,
      name: 'bench',
      ephemeral: { users },
    });
    const officer = await RemotePartition.connect({ socketPath: socket.socketPath });
    await officer.login({ user: 'officer', pin: users[0]!.pin });
    await officer.createKey({ label: 'bench-member', algorithm: c.algorithm });
    await officer.close();
    members.push({ socket, child });
  }
  try {
    const clusters = await Promise.all(
      counts.map((n) =>
        PartitionCluster.connect({
          name: 'bench',
          members: members.slice(0, n).map((m) => ({ socketPath: m.socket.socketPath })),
          onConnect: (p) => p.login({ user: 'ca', pin: users[1]!.pin }).then(() => {}),
        }),
      ),
    );
    const local = c.local();
    const rows = counts.map((n) => ({ n, local: [] as Measure[], remote: [] as Measure[] }));
    for (const cluster of clusters) {
      await Promise.all(
        Array.from({ length: 300 }, () =>
          cluster.sign({
            key: { label: 'bench-member' },
            mechanism: c.mechanism,
            purpose: 'certificate',
            data: tbs,
          }),
        ),
      );
    }
    for (let round = 1; round <= rounds; round++) {
      for (const [i, row] of rows.entries()) {
        const cluster = clusters[i]!;
        const pids = members.slice(0, row.n).map((m) => m.child.child.pid!);
        const l = inProcess(local, c);
        const end = performance.now() + seconds * 1000;
        let count = 0;
        const cpu0 = ownCpuMicros();
        const partitionCpu0 = pids.reduce((sum, pid) => sum + processCpuMicros(pid), 0);
        const started = performance.now();
        await Promise.all(
          Array.from({ length: inFlight }, async () => {
            while (performance.now() < end) {
              await cluster.sign({
                key: { label: 'bench-member' },
                mechanism: c.mechanism,
                purpose: 'certificate',
                data: tbs,
              });
              count++;
            }
          }),
        );
        const partitionCpu = pids.reduce((sum, pid) => sum + processCpuMicros(pid), 0) - partitionCpu0;
        const m = {
          rate: count / ((performance.now() - started) / 1000),
          cpu: (ownCpuMicros() - cpu0) / count,
          partitionCpu: partitionCpu / count,
        };
        row.local.push(l);
        row.remote.push(m);
        console.error(
          `round ${round} P-256 ${row.n} member(s): in-process ${Math.round(l.rate)}/s, cluster ${Math.round(m.rate)}/s`,
        );
      }
    }
    console.log(`
P-256 through the cluster client (${inFlight} in flight, ${seconds} s x ${rounds} rounds; medians)`);
    console.log('members  in-process/s  cluster/s  ratio | CPU µs per signature: partitions (sum) client');
    for (const row of rows) {
      const ratio = median(row.remote.map((m, i) => m.rate / row.local[i]!.rate));
      console.log(
        [
          String(row.n).padEnd(7),
          String(Math.round(median(row.local.map((m) => m.rate)))).padStart(13),
          String(Math.round(median(row.remote.map((m) => m.rate)))).padStart(10),
          `${(ratio * 100).toFixed(0)}%`.padStart(6),
          '|',
          median(row.remote.map((m) => m.partitionCpu!))
            .toFixed(1)
            .padStart(39),
          median(row.remote.map((m) => m.cpu))
            .toFixed(1)
            .padStart(6),
        ].join(' '),
      );
    }
    console.log(
      'On 2 cores, more members add no CPU: the figure to watch is what spreading costs (ratio and\n' +
        'client CPU against 1 member); on separate machines each member brings its own cores.',
    );
    for (const cluster of clusters) await cluster.close();
  } finally {
    for (const m of members) {
      await m.child.stop();
      await m.socket.cleanup();
    }
  }
}
