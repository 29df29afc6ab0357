"use client";

import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useCallback, useEffect, useState } from "react";
import { ApiBanner } from "@/components/ApiBanner";
import { Nav } from "@/components/Nav";
import { ConfigForm } from "@/features/config/ConfigForm";
import { DeadLetters } from "@/features/deadletters/DeadLetters";
import { EventLookup } from "@/features/events/EventLookup";
import { Explorer } from "@/features/explorer/Explorer";
import { Kafka } from "@/features/kafka/Kafka";
import { Overview } from "@/features/overview/Overview";
import { SensorPage } from "@/features/sensors/SensorPage";
import { Sensors } from "@/features/sensors/Sensors";
import { parseState, serializeState, type UrlState, type View } from "@/lib/url";

function makeClient() {
  return new QueryClient({
    defaultOptions: {
      queries: {
        retry: (count, err) => !("status" in (err as object)) || count < 1, // keep retrying an unreachable API
        retryDelay: (n) => Math.min(1000 * 2 ** n, 5000),
        staleTime: 500,
        refetchOnWindowFocus: false,
      },
    },
  });
}

export function App() {
  const [client] = useState(makeClient);
  const [state, setState] = useState<UrlState | null>(null);

  useEffect(() => {
    const read = () => setState(parseState(window.location.search));
    read();
    window.addEventListener("popstate", read);
    return () => window.removeEventListener("popstate", read);
  }, []);

  const update = useCallback((next: UrlState) => {
    window.history.pushState(null, "", serializeState(next));
    setState(next);
  }, []);

  const setView = (view: View) => state && update({ ...state, view });

  return (
    <QueryClientProvider client={client}>
      <header className="header">
        <h1>sensorpipe</h1>
        {state ? <Nav view={state.view} onChange={setView} /> : null}
      </header>
      <ApiBanner />
      <main>
        {state?.view === "overview" ? <Overview /> : null}
        {state?.view === "explorer" ? <Explorer state={state} onChange={update} /> : null}
        {state?.view === "sensors" ? (
          <Sensors onOpen={(id) => update({ ...state, view: "sensor", sensors: [id] })} />
        ) : null}
        {state?.view === "sensor" ? (
          <SensorPage state={state} onChange={update} onExplore={(id) => update({ ...state, view: "explorer", sensors: [id] })} />
        ) : null}
        {state?.view === "deadletters" ? <DeadLetters /> : null}
        {state?.view === "events" ? <EventLookup /> : null}
        {state?.view === "kafka" ? <Kafka /> : null}
        {state?.view === "config" ? <ConfigForm /> : null}
      </main>
    </QueryClientProvider>
  );
}
