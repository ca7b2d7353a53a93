// The tus project's own Node server (@tus/server with @tus/file-store, as its README sets it
// up), the second baseline of `securechat-loadgen upload`: it receives the same uploads from
// the same client as the real server. Uploads live under /api/uploads (relative Location), so
// the load generator's requests need no change; a finished upload is served by GET at its
// Location. No authentication (the Authorization header is ignored), no hashing, and
// @tus/file-store does not fsync.
//
//   node tests-web/tools/tus-node-server.mjs --dir DIR [--port 0] [--max-size BYTES]
//
// The first line on stdout is `tus-node-server listening on http://127.0.0.1:PORT`.

import { parseArgs } from 'node:util';
import { mkdirSync } from 'node:fs';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    port: { type: 'string', default: '0' },
    'max-size': { type: 'string', default: String(64 * 2 ** 30) },
  },
});
if (!values.dir) {
  console.error('usage: tus-node-server.mjs --dir DIR [--port 0] [--max-size BYTES]');
  process.exit(2);
}
mkdirSync(values.dir, { recursive: true });

const tus = new Server({
  path: '/api/uploads',
  datastore: new FileStore({ directory: values.dir }),
  relativeLocation: true,
  maxSize: Number(values['max-size']),
});

const http = tus.listen({ host: '127.0.0.1', port: Number(values.port) }, () => {
  const { port } = http.address();
  process.stdout.write(`tus-node-server listening on http://127.0.0.1:${port}\n`);
});
