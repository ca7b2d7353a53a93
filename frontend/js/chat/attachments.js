// Owns the files of the open conversation (#files-panel, and the Attach button of the
// composer): picking or dropping files to send (uploads.js), the upload rows (progress bar,
// speed, time left, pause / resume / cancel, "pick the file again" after a reload), and the
// conversation's files (filebox.js) with their decrypted name, size and type, a download with
// its progress bar, "Save" offered only once the file verified (showSaveFilePicker where the
// browser has it, a blob: URL and <a download> otherwise), inline previews of images, and
// refused / damaged files as such (a refused manifest never shows a name).
// Every text is written with textContent; nothing is built from HTML strings.
import { authErrorMessage } from '../auth.js';
import { formatBytes } from '../uploads.js';
import { $, saveBlob, say, show } from '../ui.js';
import { dropMissing, el, placeAfter, when } from './format.js';

function duration(seconds) {
  if (!Number.isFinite(seconds)) return '';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const UPLOAD_STATE = {
  checking: 'Checking…',
  hashing: 'Reading the file…',
  sending: 'Encrypting and sending',
  retrying: 'Connection lost, retrying…',
  paused: 'Paused',
  needs_file: 'Interrupted: pick the same file again to resume',
  failed: 'Not sent',
  done: 'Sent',
  cancelled: 'Cancelled',
};

const REFUSED_TEXT = {
  manifest: 'This file’s description did not verify against the keys you pinned, so it is not shown.',
  size: 'This file’s description does not match the file the server holds, so it is not shown.',
};

export class Attachments {
  /**
   * @param {import('../filebox.js').FileBox} filebox
   * @param {import('../uploads.js').Uploads} uploads
   * @param {() => string|null} peer  the open conversation
   */
  constructor(filebox, uploads, peer) {
    this.box = filebox;
    this.uploads = uploads;
    this.peer = peer;
    this.uploadRows = new Map(); // Upload -> li
    this.fileRows = new Map(); // file id -> li
    this.repickFor = null;
  }

  wire() {
    const input = $('attach-input');
    $('attach').addEventListener('click', () => input.click());
    input.addEventListener('change', () => {
      this.send([...input.files]);
      input.value = '';
    });
    const repick = $('repick-input');
    repick.addEventListener('change', () => {
      const file = repick.files[0];
      const upload = this.repickFor;
      repick.value = '';
      this.repickFor = null;
      if (file && upload) upload.attach(file);
    });
    const zone = $('conversation');
    let depth = 0;
    const hasFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes('Files');
    zone.addEventListener('dragenter', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth++;
      zone.dataset.dropping = 'true';
    });
    zone.addEventListener('dragover', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'copy';
    });
    zone.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) zone.dataset.dropping = 'false';
    });
    zone.addEventListener('drop', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth = 0;
      zone.dataset.dropping = 'false';
      this.send([...event.dataTransfer.files]);
    });
    $('files-older').addEventListener('click', () => {
      const peer = this.peer();
      if (peer) this.box.load(peer, { older: true }).catch((err) => this.status(`Could not load earlier files: ${authErrorMessage(err)}`));
    });
  }

  status(text) {
    say($('files-status'), text);
  }

  send(files) {
    const peer = this.peer();
    if (!peer || !files.length) return;
    this.status('');
    for (const file of files) this.uploads.send(peer, file);
  }

  /** A conversation was opened: its rows go, its files are fetched. */
  async open(peer) {
    $('uploads').replaceChildren();
    $('files').replaceChildren();
    this.uploadRows.clear();
    this.fileRows.clear();
    this.status('');
    this.render();
    try {
      await this.box.load(peer);
    } catch (err) {
      if (this.peer() === peer) this.status(`Could not load the files: ${authErrorMessage(err)}`);
    }
    this.render();
  }

  render() {
    const peer = this.peer();
    if (!peer) return;
    this.renderUploads(peer);
    this.renderFiles(peer);
    const files = this.box.list(peer);
    const count = files.length + this.uploads.forPeer(peer).length;
    $('files-panel').dataset.empty = count ? 'false' : 'true';
    $('files-count').textContent = files.length ? `(${files.length})` : '';
    show($('files-older'), Boolean(this.box.peers.get(peer)?.nextCursor));
  }

  // ---------------------------------------------------------------- uploads

  renderUploads(peer) {
    const list = $('uploads');
    const keep = new Set();
    let previous = null;
    for (const upload of this.uploads.forPeer(peer)) {
      keep.add(upload);
      let li = this.uploadRows.get(upload);
      if (!li) {
        li = this.uploadRow(upload);
        this.uploadRows.set(upload, li);
      }
      this.fillUpload(li, upload);
      placeAfter(list, li, previous);
      previous = li;
    }
    dropMissing(this.uploadRows, keep);
  }

  uploadRow(upload) {
    const li = el('li', 'upload');
    li.dataset.local = upload.localId;
    const name = el('span', 'file-name', upload.name);
    const meta = el('p', 'upload-meta');
    meta.dataset.role = 'upload-meta';
    const bar = document.createElement('progress');
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute('aria-label', `Sending ${upload.name}`);
    const actions = el('div', 'file-actions');
    const pause = el('button', 'button small', 'Pause');
    pause.type = 'button';
    pause.dataset.action = 'pause';
    pause.addEventListener('click', () => upload.pause());
    const resume = el('button', 'button small', 'Resume');
    resume.type = 'button';
    resume.dataset.action = 'resume';
    resume.addEventListener('click', () => upload.resume());
    const pick = el('button', 'button small primary', 'Pick the file');
    pick.type = 'button';
    pick.dataset.action = 'pick';
    pick.addEventListener('click', () => {
      this.repickFor = upload;
      $('repick-input').click();
    });
    const cancel = el('button', 'button small subtle', 'Cancel');
    cancel.type = 'button';
    cancel.dataset.action = 'cancel';
    cancel.addEventListener('click', () => {
      if (upload.state === 'failed') this.uploads.remove(upload);
      else upload.cancel();
    });
    const error = el('p', 'upload-error');
    error.setAttribute('role', 'alert');
    actions.append(pause, resume, pick, cancel);
    li.append(name, actions, meta, bar, error);
    li.parts = { meta, bar, pause, resume, pick, cancel, error };
    return li;
  }

  fillUpload(li, upload) {
    const { meta, bar, pause, resume, pick, cancel, error } = li.parts;
    li.dataset.state = upload.state;
    const p = upload.progress();
    bar.value = p.fraction;
    bar.dataset.fraction = String(p.fraction);
    const bits = [UPLOAD_STATE[upload.state] ?? upload.state];
    if (upload.state === 'hashing') {
      bits.push(`${formatBytes(p.done)} of ${formatBytes(upload.size)}`);
    } else if (['sending', 'retrying', 'paused'].includes(upload.state)) {
      bits.push(`${formatBytes(p.done)} of ${formatBytes(p.total)}`);
      if (upload.state === 'sending' && p.speed > 0) {
        bits.push(`${formatBytes(Math.round(p.speed))}/s`);
        if (p.eta !== null) bits.push(`${duration(p.eta)} left`);
      }
    } else {
      bits.push(formatBytes(upload.size));
    }
    meta.textContent = bits.join(' · ');
    show(pause, upload.state === 'sending' || upload.state === 'retrying');
    show(resume, upload.state === 'paused');
    show(pick, upload.state === 'needs_file');
    cancel.textContent = upload.state === 'failed' ? 'Dismiss' : 'Cancel';
    const problem = upload.error && (upload.state === 'failed' || upload.state === 'needs_file') ? upload.error.message : '';
    error.textContent = problem;
    if (upload.state === 'failed') this.status(`${upload.name} was not sent: ${upload.error?.message ?? ''}`);
  }

  // ---------------------------------------------------------------- files

  renderFiles(peer) {
    const list = $('files');
    const keep = new Set();
    let previous = null;
    for (const entry of this.box.list(peer)) {
      const id = entry.file.id;
      keep.add(id);
      let li = this.fileRows.get(id);
      if (!li) {
        li = el('li', 'file');
        li.dataset.id = id;
        this.fileRows.set(id, li);
      }
      this.fillFile(li, peer, entry);
      placeAfter(list, li, previous);
      previous = li;
    }
    dropMissing(this.fileRows, keep);
  }

  fillFile(li, peer, entry) {
    const f = entry.file;
    const d = entry.download;
    const signature = [entry.status, f.state, d?.state, d?.received, entry.preview?.url, entry.preview?.state].join('|');
    if (li.dataset.render === signature) return;
    li.dataset.render = signature;
    li.dataset.status = entry.status;
    li.dataset.state = f.state;
    li.dataset.mine = f.from === this.box.me ? 'true' : 'false';
    const who = f.from === this.box.me ? 'You sent' : `${f.from} sent`;
    const parts = [];
    if (entry.status === 'opening') {
      parts.push(el('span', 'file-name', 'Opening…'));
    } else if (entry.status === 'refused') {
      const name = el('span', 'file-name', 'File refused');
      const problem = el('p', 'file-problem', REFUSED_TEXT[entry.reason] ?? REFUSED_TEXT.manifest);
      problem.dataset.role = 'refused';
      parts.push(name, el('p', 'file-meta', `${who} · ${when(f.server_ts)}`), problem);
      li.replaceChildren(...parts);
      return;
    } else {
      const m = entry.manifest;
      const name = el('span', 'file-name', m.name || 'unnamed file');
      name.dataset.role = 'file-name';
      parts.push(name);
      const actions = el('div', 'file-actions');
      if (f.state === 'ready') {
        if (d?.state === 'verified') {
          const save = el('button', 'button small primary', 'Save');
          save.type = 'button';
          save.dataset.action = 'save';
          save.addEventListener('click', () => this.save(entry, d.blob));
          actions.append(save);
        } else {
          const download = el('button', 'button small', d?.state === 'running' ? 'Downloading…' : 'Download');
          download.type = 'button';
          download.dataset.action = 'download';
          download.disabled = d?.state === 'running';
          download.setAttribute('aria-label', `Download ${m.name}`);
          download.addEventListener('click', () => {
            this.box.download(peer, f.id).catch(() => {});
          });
          actions.append(download);
        }
      }
      parts.push(actions);
      const type = m.mime || 'unknown type';
      parts.push(el('p', 'file-meta', `${formatBytes(m.size)} · ${type} · ${who} · ${when(f.server_ts)}`));
      if (f.state === 'damaged') {
        const problem = el('p', 'file-problem', 'The server found this file damaged; it cannot be downloaded.');
        problem.dataset.role = 'damaged';
        parts.push(problem);
      }
      if (d?.state === 'running') {
        const bar = document.createElement('progress');
        bar.max = f.size || 1;
        bar.value = d.received;
        bar.setAttribute('aria-label', `Downloading ${m.name}`);
        parts.push(bar);
      } else if (d?.state === 'verified') {
        parts.push(el('p', 'file-meta', 'Downloaded and verified.'));
      } else if (d?.state === 'failed') {
        const problem = el('p', 'file-problem', d.error?.message ?? 'The download failed.');
        problem.dataset.role = 'download-error';
        parts.push(problem);
      }
      if (entry.preview?.url) {
        const img = document.createElement('img');
        img.className = 'file-preview';
        img.alt = `Preview of ${m.name}`;
        img.src = entry.preview.url;
        parts.push(img);
      }
    }
    li.replaceChildren(...parts);
  }

  /** Saves a verified Blob: the browser's save dialog where it has one, else an <a download>. */
  async save(entry, blob) {
    const name = entry.manifest.name || 'file';
    if (typeof globalThis.showSaveFilePicker === 'function') {
      try {
        const handle = await globalThis.showSaveFilePicker({ suggestedName: name });
        const writable = await handle.createWritable();
        await writable.write(blob);
        await writable.close();
        this.status(`Saved ${name}.`);
        return;
      } catch (err) {
        if (err?.name === 'AbortError') return;
        // no picker after all (permissions, an old browser): the link below
      }
    }
    saveBlob(blob, name);
  }
}
