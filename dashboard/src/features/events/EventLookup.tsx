"use client";

import { useState, type FormEvent } from "react";
import { useEvent } from "@/hooks/useDeadLetters";
import { num, time } from "@/lib/format";

/** Paste an event id: whether it is stored, when and where from, and its ignored copies. */
export function EventLookup() {
  const [text, setText] = useState("");
  const [id, setId] = useState("");
  const { data: e, isFetching, error } = useEvent(id);
  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    setId(text.trim());
  };
  return (
    <section aria-labelledby="event-title">
      <h2 id="event-title">Event lookup</h2>
      <form onSubmit={submit} className="row">
        <label>
          Event id <input data-testid="event-id" value={text} onChange={(x) => setText(x.target.value)} size={40} />
        </label>
        <button type="submit">Look up</button>
      </form>
      {id && isFetching ? <p>Looking up {id}…</p> : null}
      {error ? <p role="alert">The lookup failed: {String(error.message)}</p> : null}
      {id && e === null ? <p data-testid="event-missing">{id} was not processed (or is older than retention).</p> : null}
      {e ? (
        <div data-testid="event-found">
          <p>
            Stored {time(e.processed_at)} from partition {e.partition}, offset {num(e.offset)}
            {e.reading ? `; seq ${e.reading.seq}, value ${e.reading.value} at ${time(e.reading.timestamp)} (${e.reading.sensor_id})` : "; its reading is gone (retention)"}.
          </p>
          <div className="table-wrap">
            <table data-testid="event-ignored">
              <caption>Copies not stored ({(e.ignored ?? []).length})</caption>
              <thead>
                <tr><th scope="col">Kind</th><th scope="col">Partition</th><th scope="col">Offset</th><th scope="col">Seen</th></tr>
              </thead>
              <tbody>
                {(e.ignored ?? []).map((c) => (
                  <tr key={`${c.partition}@${c.offset}`}>
                    <td>{c.kind}</td><td>{c.partition}</td><td>{num(c.offset)}</td><td>{time(c.seen_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      ) : null}
    </section>
  );
}
