/** Keyset paging: a stack of cursors, the last one being the current page. */
export function Pager({ cursors, next, onChange }: { cursors: (string | null)[]; next: string | null | undefined; onChange: (c: (string | null)[]) => void }) {
  return (
    <div className="pager">
      <button type="button" disabled={cursors.length < 2} onClick={() => onChange(cursors.slice(0, -1))}>
        Previous page
      </button>
      <span>Page {cursors.length}</span>
      <button type="button" disabled={!next} onClick={() => next && onChange([...cursors, next])}>
        Next page
      </button>
    </div>
  );
}
