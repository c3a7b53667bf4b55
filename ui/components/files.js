// Reads the files a user picks (a file input, a folder input, or a folder dropped on
// the page) into what POST /programs takes: {dockerfile, src_files: {path: text}}.
// The Dockerfile is the file named Dockerfile at the top of what was chosen.

// [{path, file}] from an <input type=file> (a folder input gives webkitRelativePath).
export function fromInput(input) {
  return stripCommonFolder(Array.from(input.files).map((file) => ({ path: file.webkitRelativePath || file.name, file })));
}

// [{path, file}] from a drop: folders are walked (webkitGetAsEntry), files taken as they are.
export async function fromDrop(dataTransfer) {
  const entries = Array.from(dataTransfer.items || [])
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (!entries.length) return Array.from(dataTransfer.files).map((file) => ({ path: file.name, file }));
  const out = [];
  for (const entry of entries) await walk(entry, "", out);
  return stripCommonFolder(out);
}

async function walk(entry, prefix, out) {
  const path = prefix + entry.name;
  if (entry.isFile) {
    out.push({ path, file: await new Promise((resolve, reject) => entry.file(resolve, reject)) });
    return;
  }
  const reader = entry.createReader();
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) await walk(child, `${path}/`, out);
  }
}

// A chosen folder's files all start with the folder's name: strip it so the paths are
// those the Dockerfile's COPY names.
function stripCommonFolder(items) {
  const first = items[0] && items[0].path.split("/")[0];
  if (!first || !items.every((it) => it.path.startsWith(`${first}/`))) return items;
  return items.map((it) => ({ path: it.path.slice(first.length + 1), file: it.file }));
}

// {dockerfile, src_files} or throws an Error naming what is wrong.
export async function readPayload(files) {
  if (!files.length) throw new Error("choose the program's files: a Dockerfile and its sources");
  let dockerfile = null;
  const src = {};
  for (const { path, file } of files) {
    const content = await file.text();
    if (path === "Dockerfile") dockerfile = content;
    else src[path] = content;
  }
  if (dockerfile === null) {
    throw new Error(`no file named Dockerfile among the ${files.length} chosen (${files.map((f) => f.path).slice(0, 5).join(", ")})`);
  }
  return { dockerfile, src_files: src };
}

// "NAME=value" lines (blank lines and # comments skipped) into an env object.
export function parseEnv(textValue) {
  const env = {};
  textValue.split("\n").forEach((line, i) => {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith("#")) return;
    const eq = trimmed.indexOf("=");
    if (eq <= 0) throw new Error(`env line ${i + 1}: write NAME=value`);
    env[trimmed.slice(0, eq)] = trimmed.slice(eq + 1);
  });
  return env;
}
