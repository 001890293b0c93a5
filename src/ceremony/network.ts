import { readdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { CeremonyError } from './errors.ts';

/**
 * An offline ceremony refuses to run while the machine can reach a network (Boulder's ceremony
 * tool assumes an air-gapped host; here it is checked, not assumed). What was seen is recorded in
 * the transcript either way.
 */
export interface InterfaceObservation {
  name: string;
  /** Link state from /sys/class/net/NAME/operstate when readable ('up', 'down', 'unknown', ...). */
  state: string;
  addresses: string[];
  loopback: boolean;
}

export interface NetworkObservation {
  allowed: boolean;
  interfaces: InterfaceObservation[];
  /** Non-loopback interfaces that were up (or had an address) when checked. */
  up: string[];
}

export type InterfaceProbe = () => InterfaceObservation[];

/** Reads interfaces from the OS: libuv's list (only interfaces up and running with an address) plus Linux's sysfs link states. */
export const systemInterfaceProbe: InterfaceProbe = () => {
  const byName = new Map<string, InterfaceObservation>();
  for (const [name, entries] of Object.entries(networkInterfaces())) {
    const list = entries ?? [];
    byName.set(name, {
      name,
      state: 'up',
      addresses: list.map((e) => e.cidr ?? e.address),
      loopback: list.length > 0 && list.every((e) => e.internal),
    });
  }
  let sysfs: string[] = [];
  try {
    sysfs = readdirSync('/sys/class/net');
  } catch {
    // Not Linux, or no sysfs: libuv's list is all there is.
  }
  for (const name of sysfs) {
    let state = 'unknown';
    let loopback = name === 'lo';
    try {
      state = readFileSync(`/sys/class/net/${name}/operstate`, 'utf8').trim();
      // ARPHRD_LOOPBACK = 772 (linux/if_arp.h)
      loopback = readFileSync(`/sys/class/net/${name}/type`, 'utf8').trim() === '772';
    } catch {
      // An interface that vanished while listing: keep what libuv said.
    }
    const known = byName.get(name);
    if (known) {
      known.state = state === 'unknown' ? known.state : state;
      known.loopback = known.loopback || loopback;
    } else {
      byName.set(name, { name, state, addresses: [], loopback });
    }
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
};

function isUp(i: InterfaceObservation): boolean {
  // 'unknown' operstate is what many virtual links (tun, some veth) report while passing traffic.
  return !i.loopback && (i.addresses.length > 0 || i.state === 'up' || i.state === 'unknown');
}

/** Observes the interfaces and, unless `allowNetwork`, refuses when one other than loopback is up. */
export function checkNetwork({
  allowNetwork,
  probe = systemInterfaceProbe,
}: {
  allowNetwork: boolean;
  probe?: InterfaceProbe;
}): NetworkObservation {
  const interfaces = probe();
  const up = interfaces.filter(isUp).map((i) => i.name);
  if (up.length > 0 && !allowNetwork) {
    throw new CeremonyError(
      'ceremony.network_up',
      `refusing to run: network interface${up.length > 1 ? 's' : ''} ${up.join(', ')} up (disconnect, or pass --allow-network to record it and go on)`,
      { up },
    );
  }
  return { allowed: allowNetwork, interfaces, up };
}
