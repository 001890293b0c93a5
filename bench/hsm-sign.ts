/**
 * Signatures per second through the partition process, against Node's in-process, single-threaded
 * crypto.sign with the same key type, in the same run (issue #2). Run:
 *
 *   node --import tsx bench/hsm-sign.ts [--seconds 1] [--in-flight 128] [--rounds 9] [--keys p256,p384,rsa2048,ed25519]
 *
 * The partition is a real `signet hsm serve --ephemeral` child process reached over its Unix
 * socket; the client keeps `--in-flight` signatures pending on one connection. Each round measures
 * in-process then partition for every key type, so a machine busy with something else slows both
 * sides of a ratio alike; medians of the per-round figures are reported.
 */
import 'reflect-metadata';
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { RemotePartition } from '../src/hsm/client.ts';
import { startPartitionProcess, temporarySocketPath } from '../src/hsm/process.ts';
import type { KeyAlgorithm, SignMechanism } from '../src/hsm/types.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '1' },
    'in-flight': { type: 'string', default: '128' },
    rounds: { type: 'string', default: '9' },
    keys: { type: 'string', default: 'p256,p384,rsa2048,ed25519' },
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
const partition = await startPartitionProcess({ socketPath, name: 'bench', ephemeral: { users } });
try {
  const officer = await RemotePartition.connect({ socketPath });
  await officer.login({ user: 'officer', pin: users[0]!.pin });
  const client = await RemotePartition.connect({ socketPath });
  await client.login({ user: 'ca', pin: users[1]!.pin });
  const prepared = await Promise.all(
    selected.map(async (c) => {
      const label = `bench-${c.algorithm}`;
      await officer.createKey({ label, algorithm: c.algorithm });
      return { c, label, local: c.local(), local_: [] as Measure[], remote: [] as Measure[] };
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
  }
  for (let round = 1; round <= rounds; round++) {
    for (const p of prepared) {
      const local = inProcess(p.local, p.c);
      const remote = await throughPartition(client, partition.child.pid!, p.label, p.c);
      p.local_.push(local);
      p.remote.push(remote);
      console.error(
        `round ${round} ${p.c.name}: in-process ${Math.round(local.rate)}/s (${local.cpu.toFixed(1)} µs CPU each), ` +
          `partition ${Math.round(remote.rate)}/s (${remote.partitionCpu!.toFixed(1)} µs partition + ${remote.cpu.toFixed(1)} µs client CPU each)`,
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
  console.log(
    '\nratio: partition/s over in-process/s. CPU ratio: in-process over partition CPU per signature, the\n' +
      'ratio when the partition has a core to itself and the client the other. On a busy machine the\n' +
      'two processes get more CPU share than the one-thread loop (ratio too high) and the partition\n' +
      'wakes up more often for fewer frames (CPU ratio too low).',
  );
  await client.close();
  await officer.close();
} finally {
  await partition.stop();
  await cleanup();
}
