// Small helpers for building the page's elements without HTML strings, so text from the
// server or the model is always inserted as text, never parsed as markup.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'text') {
      node.textContent = value;
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// A select's options from `[{value, label, disabled}]` or optgroups `{group, options}`,
// keeping the current choice where it is still offered.
export function fillSelect(select, entries) {
  const previous = select.value;
  const option = ({ value, label, disabled }) => el('option', { value, disabled, text: label });
  select.replaceChildren(
    ...entries.map((entry) =>
      entry.group
        ? el('optgroup', { label: entry.group }, ...entry.options.map(option))
        : option(entry),
    ),
  );
  const still = [...select.options].find((candidate) => candidate.value === previous && !candidate.disabled);
  if (still) select.value = previous;
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes <= 0) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const power = Math.min(units.length - 1, Math.floor(Math.log(bytes) / Math.log(1024)));
  const value = bytes / 1024 ** power;
  return `${value >= 10 || power === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[power]}`;
}
