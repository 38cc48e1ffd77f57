// Whether a hearth server is behind the page, and what a static export gives instead.
// `app/site.json` says which: `hearth serve` serves one saying "not an export", and
// `hearth export-web` writes its own, naming its copies of what browser mode otherwise
// reads from the API (the catalog with each model's file URL, and the architectures).
// Every URL here is relative to the page, so the folder works under any path prefix.

// The site description; a page whose site.json cannot be read is taken to be served
// by hearth, whose API then says what is wrong.
export async function readSite() {
  try {
    const response = await fetch('app/site.json');
    return response.ok ? await response.json() : {};
  } catch {
    return {};
  }
}

async function readJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${response.statusText}`);
  return response.json();
}

// What browser mode needs from the export (see BrowserMode.fill): the catalog, the
// models that have a file URL, and where each is read from. A relative artifact URL
// (`--models-url models`) is taken relative to the catalog file, as a browser would.
export async function exportedCatalog(site) {
  const catalogUrl = new URL(site.catalog, location.href);
  const catalog = await readJson(catalogUrl);
  const urls = new Map(
    catalog.models
      .filter((model) => model.artifacts.length)
      .map((model) => [model.id, new URL(model.artifacts[0].url, catalogUrl).href]),
  );
  return {
    catalog,
    available: [...urls.keys()],
    source: {
      modelUrl: (id) => urls.get(id),
      architectures: new URL(site.architectures, location.href).href,
      // No key: the files are public, and a header beyond Range would make every
      // cross-origin read ask the model server's permission first.
      headers: () => ({}),
      missing: 'no model file URL in this export',
    },
  };
}
