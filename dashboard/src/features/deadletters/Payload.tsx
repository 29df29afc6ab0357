import type { BytesPublic } from "@/api/client";

const WIDTH = 16;

/** Rows of a hex dump: offset, the bytes in hex, and their printable ASCII. */
export function hexRows(hex: string): { offset: string; hex: string; ascii: string }[] {
  const bytes = hex.match(/../g) ?? [];
  const rows = [];
  for (let i = 0; i < bytes.length; i += WIDTH) {
    const chunk = bytes.slice(i, i + WIDTH);
    const ascii = chunk.map((b) => {
      const c = parseInt(b, 16);
      return c >= 32 && c < 127 ? String.fromCharCode(c) : ".";
    });
    rows.push({ offset: i.toString(16).padStart(8, "0"), hex: chunk.join(" "), ascii: ascii.join("") });
  }
  return rows;
}

/** Bytes of a message: escaped text when they are UTF-8, and a hex view always. */
export function Payload({ label, bytes }: { label: string; bytes: BytesPublic | null | undefined }) {
  if (!bytes) {
    return (
      <p>
        {label}: <em>none</em>
      </p>
    );
  }
  return (
    <figure className="payload" data-testid={`payload-${label}`}>
      <figcaption>
        {label} ({bytes.size} bytes{bytes.text === null ? ", not UTF-8" : ""})
      </figcaption>
      {bytes.text !== null ? <pre data-testid={`text-${label}`}>{bytes.text}</pre> : null}
      <pre className="hex" data-testid={`hex-${label}`}>
        {hexRows(bytes.hex)
          .map((r) => `${r.offset}  ${r.hex.padEnd(WIDTH * 3 - 1)}  ${r.ascii}`)
          .join("\n")}
      </pre>
    </figure>
  );
}
