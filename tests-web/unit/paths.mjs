// Paths of the repository, relative to this file (never absolute).
export const FRONTEND_JS = new URL('../../frontend/js/', import.meta.url);
export const TESTDATA = new URL('../../testdata/', import.meta.url);

export function frontendModule(name) {
  return import(new URL(name, FRONTEND_JS).href);
}
