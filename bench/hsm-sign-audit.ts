// bench/hsm-sign-audit (issue #4): the method of bench/hsm-sign.ts, P-256 only, but the partition serves a partition
// folder (sealed file store + file audit log with group commit) and, in the same run, an
// ephemeral one (in-memory audit) for comparison. Usage: node --import tsx bench/hsm-sign-audit.ts [seconds] [rounds] [inFlight]
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemotePartition } from '../src/hsm/client.ts';
import { initPartition, verifyAuditLog } from '../src/hsm/custody/index.ts';
import { startPartitionProcess, temporarySocketPath } from '../src/hsm/process.ts';

const [seconds = 3, rounds = 3, inFlight = 128] = process.argv.slice(2).map(Number);
const tbs = Buffer.alloc(400, 0x42);
const cpuOf = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / 100;
};
const sysOf = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[12]) * 1e6) / 100;
};
const own = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const local = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
function inProcess() {
  const c0 = own();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 16; i++) sign('sha256', tbs, { key: local, dsaEncoding: 'ieee-p1363' });
    n += 16;
  }
  return { rate: n / ((performance.now() - t0) / 1000), cpu: (own() - c0) / n };
}
async function remote(client: RemotePartition, pid: number) {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const w = async () => {
    while (performance.now() < end) {
      await client.sign({
        key: { label: 'bench' },
        mechanism: 'ecdsa-sha256',
        purpose: 'certificate',
        data: tbs,
      });
      n++;
    }
  };
  const c0 = own();
  const p0 = cpuOf(pid);
  const s0 = sysOf(pid);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, w));
  const sys = (sysOf(pid) - s0) / n;
  console.error(`   partition system CPU ${sys.toFixed(1)} µs/sig`);
  return {
    rate: n / ((performance.now() - t0) / 1000),
    cpu: (own() - c0) / n,
    pcpu: (cpuOf(pid) - p0) / n,
    n,
  };
}
const base = mkdtempSync(join(tmpdir(), 'bench-dir-'));
/**
 * The disk's own fdatasync latency, on the file system of the partition folder: each audit group
 * waits for one, so it bounds what the file audit log can reach (issue #22: print it in the run).
 */
async function fdatasyncLatency(samples = 300): Promise<{ median: number; p90: number }> {
  const handle = await open(join(base, 'fdatasync-probe'), 'w+');
  const chunk = Buffer.alloc(4096, 0x61);
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    await handle.write(chunk, 0, chunk.length, i * chunk.length);
    await handle.datasync();
    times.push(performance.now() - t0);
  }
  await handle.close();
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(samples / 2)]!, p90: times[Math.floor(samples * 0.9)]! };
}
const syncBefore = await fdatasyncLatency();
const dir = join(base, 'bench');
const pins = { officer: 'bench-officer-pin', ca: 'bench-user-pin-1' };
const secrets = await initPartition({
  dir,
  name: 'bench',
  sealing: { kind: 'secret' },
  officerPin: pins.officer,
  userPin: pins.ca,
});
const setups = [
  {
    name: 'folder (file audit log)',
    start: async (socketPath: string) => startPartitionProcess({ socketPath, dir }),
    unseal: true,
  },
  {
    name: 'ephemeral (memory audit)',
    start: async (socketPath: string) =>
      startPartitionProcess({
        socketPath,
        name: 'bench',
        ephemeral: {
          users: [
            { name: 'officer', role: 'officer', pin: pins.officer },
            { name: 'ca', role: 'user', pin: pins.ca },
          ],
        },
      }),
    unseal: false,
  },
];
const results: Record<string, { local: number[]; remote: number[]; pcpu: number[]; ccpu: number[] }> = {};
const running = [];
for (const s of setups) {
  const { socketPath } = await temporarySocketPath();
  const proc = await s.start(socketPath);
  const admin = await RemotePartition.connect({ socketPath });
  if (s.unseal) await admin.unseal({ secret: Buffer.from(secrets.secret!) });
  await admin.login({ user: 'officer', pin: pins.officer });
  await admin.createKey({ label: 'bench', algorithm: 'ecdsa-p256' });
  const client = await RemotePartition.connect({ socketPath });
  await client.login({ user: 'ca', pin: pins.ca });
  await Promise.all(
    Array.from({ length: 500 }, () =>
      client.sign({ key: { label: 'bench' }, mechanism: 'ecdsa-sha256', purpose: 'certificate', data: tbs }),
    ),
  );
  running.push({ s, proc, client, admin });
  results[s.name] = { local: [], remote: [], pcpu: [], ccpu: [] };
}
for (let r = 1; r <= rounds; r++) {
  for (const { s, proc, client } of running) {
    const l = inProcess();
    const m = await remote(client, proc.child.pid!);
    const res = results[s.name]!;
    res.local.push(l.rate);
    res.remote.push(m.rate);
    res.pcpu.push(m.pcpu);
    res.ccpu.push(m.cpu);
    console.error(
      `round ${r} ${s.name}: in-process ${Math.round(l.rate)}/s, partition ${Math.round(m.rate)}/s (${((100 * m.rate) / l.rate).toFixed(0)}%), partition CPU ${m.pcpu.toFixed(1)} µs/sig, client ${m.cpu.toFixed(1)} µs/sig`,
    );
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`P-256, ${inFlight} in flight, ${seconds} s x ${rounds} rounds, medians`);
for (const [name, r] of Object.entries(results)) {
  const ratios = r.remote.map((x, i) => x / r.local[i]!);
  console.log(
    `${name.padEnd(26)} in-process ${Math.round(med(r.local))}/s  partition ${Math.round(med(r.remote))}/s  ratio ${(100 * med(ratios)).toFixed(0)}%  partition CPU ${med(r.pcpu).toFixed(1)} µs/sig  client ${med(r.ccpu).toFixed(1)} µs/sig`,
  );
}
for (const { client, admin, proc } of running) {
  await client.close();
  await admin.close();
  await proc.stop();
}
const syncAfter = await fdatasyncLatency();
console.log(
  `disk (${tmpdir()}): 4 KiB write + fdatasync median ${syncBefore.median.toFixed(2)} ms, p90 ${syncBefore.p90.toFixed(2)} ms before the rounds; ${syncAfter.median.toFixed(2)} / ${syncAfter.p90.toFixed(2)} ms after`,
);
const log = statSync(join(dir, 'audit.log'));
console.log('audit.log', log.size, 'bytes;', JSON.stringify(await verifyAuditLog({ dir })));
rmSync(base, { recursive: true, force: true });
