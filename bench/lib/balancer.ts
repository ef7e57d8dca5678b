/**
 * A round-robin TCP balancer for BENCH_INSTANCES > 1: each connection the load generator opens goes
 * to the next Gatehouse process, and stays there (autocannon keeps its connections alive), as behind
 * a layer-4 load balancer. It runs in the benchmark's own process, so its CPU is counted with the
 * load generator's, not Gatehouse's.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpBalancer {
  port: number;
  close(): Promise<void>;
}

export async function startTcpBalancer(port: number, targets: number[]): Promise<TcpBalancer> {
  let turn = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const target = targets[turn++ % targets.length]!;
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
