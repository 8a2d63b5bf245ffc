// A real HAProxy (Debian package `haproxy`) as the load balancer in front of a test server: TCP mode, one
// frontend on 127.0.0.1 at a free port, one backend server that gets a PROXY protocol v1 or v2 header (or none),
// run in the foreground with its config in the caller's directory, stopped and waited for.
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { connect, isIP } from 'node:net';
import { join } from 'node:path';
import { cleanEnv } from '../../src/embedded/exec.js';
import { pickFreePort } from '../../src/embedded/ports.js';
import { supervise } from './child-process.js';

export interface StartHaproxyOptions {
  backendPort: number;
  /** IPv4 or IPv6 address of the backend (default 127.0.0.1); no host names, so startup never waits on DNS. */
  backendHost?: string;
  /** send-proxy (v1), send-proxy-v2, or a plain TCP relay. */
  sendProxy: 'v1' | 'v2' | 'none';
  /** Where haproxy.cfg is written; the caller owns the directory and removes it. */
  dir: string;
  /** How long to wait for the frontend to accept connections (default 15 s). */
  readyTimeoutMs?: number;
}

export interface HaproxyProcess {
  /** The frontend port on 127.0.0.1 that clients connect to. */
  port: number;
  pid: number;
  configFile: string;
  /** HAProxy's stdout and stderr lines (warnings, alerts), for failure messages. */
  logs: string[];
  /** Stops HAProxy (SIGTERM, SIGKILL after 10 s) and resolves once it has exited. */
  stop(): Promise<void>;
}

/** $HAPROXY, else the Debian location. */
export function haproxyBinary(): string {
  return process.env.HAPROXY ?? '/usr/sbin/haproxy';
}

/**
 * Readiness probes connect from this loopback address and the frontend rejects them at accept time, so a probe
 * proves the port accepts connections without HAProxy ever opening a backend connection the test would see.
 * (Linux routes all of 127.0.0.0/8 to the loopback interface.)
 */
const PROBE_SOURCE = '127.0.0.2';
const MAX_START_ATTEMPTS = 6;
const STOP_TIMEOUT_MS = 10_000;

const SEND_PROXY = { v1: ' send-proxy', v2: ' send-proxy-v2', none: '' } as const;

function haproxyConfig(port: number, options: StartHaproxyOptions): string {
  const host = options.backendHost ?? '127.0.0.1';
  const family = isIP(host);
  if (family === 0) throw new Error(`backendHost must be an IP address, got ${JSON.stringify(host)}`);
  if (!Number.isInteger(options.backendPort) || options.backendPort < 1 || options.backendPort > 65535) {
    throw new Error(`backendPort must be a TCP port, got ${options.backendPort}`);
  }
  const server = family === 6 ? `[${host}]:${options.backendPort}` : `${host}:${options.backendPort}`;
  return [
    '# written by the pgwarden test harness (test/harness/haproxy.ts)',
    'global',
    '    maxconn 256',
    '    nbthread 1',
    '',
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    '    timeout client 5m',
    '    timeout server 5m',
    '',
    'frontend clients',
    `    bind 127.0.0.1:${port}`,
    `    tcp-request connection reject if { src ${PROBE_SOURCE} }`,
    '    default_backend target',
    '',
    'backend target',
    `    server target ${server}${SEND_PROXY[options.sendProxy]}`,
    '',
  ].join('\n');
}

type Probe = 'rejected' | 'refused' | 'held-open';

/**
 * Connects to 127.0.0.1:port from the probe address. 'rejected': something accepted and at once reset or closed
 * the connection, as our frontend's reject rule does (usually seen as ECONNRESET, sometimes as connect then
 * close); 'refused': nothing listens yet; 'held-open': a listener that is not our HAProxy took the port.
 */
function probe(port: number): Promise<Probe> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress: PROBE_SOURCE });
    let connected = false;
    const done = (result: Probe): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(connected ? 'held-open' : 'refused'), 1000);
    socket.once('connect', () => {
      connected = true;
    });
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(connected || err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'rejected' : 'refused'),
    );
    socket.once('close', () => done(connected ? 'rejected' : 'refused'));
    socket.resume();
  });
}

/** Starts HAProxy; see StartHaproxyOptions. Retries on a fresh port when the picked one was taken meanwhile. */
export async function startHaproxy(options: StartHaproxyOptions): Promise<HaproxyProcess> {
  const binary = haproxyBinary();
  if (!existsSync(binary)) {
    throw new Error(
      `HAProxy is not installed at ${binary} (Debian: apt-get install -y haproxy, or set $HAPROXY)`,
    );
  }
  const configFile = join(options.dir, 'haproxy.cfg');
  const readyTimeoutMs = options.readyTimeoutMs ?? 15_000;

  for (let attempt = 1; ; attempt++) {
    const port = await pickFreePort();
    writeFileSync(configFile, haproxyConfig(port, options));
    // -db: stay in the foreground, no daemon, no master process; the child pid is HAProxy itself.
    const child = spawn(binary, ['-db', '-f', configFile], {
      cwd: options.dir,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const server = supervise(child);
    const { logs } = server;
    // SIGTERM is HAProxy's immediate stop: listeners close and open connections are cut.
    const stop = (): Promise<void> => server.stop(STOP_TIMEOUT_MS);

    const deadline = Date.now() + readyTimeoutMs;
    let state: Probe = 'refused';
    while (!server.exited() && state === 'refused' && Date.now() < deadline) {
      state = await probe(port);
      if (state === 'refused') await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (state === 'rejected' && !server.exited()) return { port, pid: child.pid!, configFile, logs, stop };

    await stop();
    const output = logs.slice(-20).join('\n') || '(no output)';
    const collided = state === 'held-open' || /cannot bind socket|Address already in use/i.test(output);
    if (collided && attempt < MAX_START_ATTEMPTS) continue;
    const why =
      state === 'held-open'
        ? `lost port ${port} to another listener ${attempt} times`
        : server.exited()
          ? 'exited'
          : `did not accept connections on 127.0.0.1:${port} within ${readyTimeoutMs} ms`;
    throw new Error(`HAProxy ${why}:\n${output}`);
  }
}
