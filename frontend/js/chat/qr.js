// Owns drawing a QR code: wraps the vendored encoder (vendor/qrcode-generator.js, pinned in
// vendor/README.md) and renders its modules as an <svg> built with DOM calls (never markup
// strings). Used for the safety number in the verification dialog (contact.js).
import qrcode from '../vendor/qrcode-generator.js';

const SVG = 'http://www.w3.org/2000/svg';

/** The dark modules of a QR code of `text` (error correction M; digits go in numeric mode). */
export function qrModules(text) {
  const qr = qrcode(0, 'M');
  qr.addData(text, /^\d+$/.test(text) ? 'Numeric' : 'Byte');
  qr.make();
  const size = qr.getModuleCount();
  const dark = [];
  for (let row = 0; row < size; row += 1) {
    for (let col = 0; col < size; col += 1) if (qr.isDark(row, col)) dark.push([col, row]);
  }
  return { size, dark };
}

/**
 * An <svg> of the QR code of `text`, with a quiet zone of 4 modules, labelled `label` for
 * screen readers (role img). Dark modules are one path, so the element stays small.
 */
export function qrSvg(text, label) {
  const { size, dark } = qrModules(text);
  const quiet = 4;
  const full = size + quiet * 2;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${full} ${full}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.dataset.text = text;
  const background = document.createElementNS(SVG, 'rect');
  background.setAttribute('width', String(full));
  background.setAttribute('height', String(full));
  background.setAttribute('fill', '#ffffff');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', dark.map(([x, y]) => `M${x + quiet} ${y + quiet}h1v1h-1z`).join(''));
  path.setAttribute('fill', '#000000');
  svg.append(background, path);
  return svg;
}
