// Uploads a file to securechat with the stock tus-js-client (npm), unchanged: it aborts the
// upload half-way and resumes it from the server's offset (HEAD), as after a dropped
// connection. Used by server/tests/api/files.rs; env: BASE, TOKEN, DATA (a file),
// RECIPIENT, FILE_ID, RECORD_SIZE, MANIFEST. Prints {"url"} on success.
const fs = require("fs");
const tus = require("tus-js-client");

const buf = fs.readFileSync(process.env.DATA);
const recordBytes = Number(process.env.RECORD_SIZE) + 16;
let aborted = false;

function options(onHalf) {
  return {
    endpoint: process.env.BASE + "/api/uploads",
    headers: { Authorization: "Bearer " + process.env.TOKEN },
    metadata: {
      recipient: process.env.RECIPIENT,
      file_id: process.env.FILE_ID,
      record_size: process.env.RECORD_SIZE,
      manifest: process.env.MANIFEST,
    },
    // Whole records per PATCH.
    chunkSize: recordBytes * 16,
    retryDelays: [0, 200, 500, 1000],
    storeFingerprintForResuming: false,
    onProgress(sent, total) {
      if (onHalf && !aborted && sent >= total / 2) {
        aborted = true;
        onHalf();
      }
    },
    onError(e) {
      console.error(String(e));
      process.exit(1);
    },
  };
}

const first = new tus.Upload(buf, {
  ...options(() => {
    first.abort().then(() => {
      const again = new tus.Upload(buf, {
        ...options(null),
        uploadUrl: first.url,
        onSuccess() {
          console.log(JSON.stringify({ url: again.url, resumed: true }));
        },
      });
      again.start();
    });
  }),
  onSuccess() {
    console.log(JSON.stringify({ url: first.url, resumed: false }));
  },
});
first.start();
