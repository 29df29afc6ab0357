interface Props {
  label: string;
  value: string;
  hint?: string;
  tone?: "normal" | "warn" | "alarm";
  testId?: string;
}

export function StatTile({ label, value, hint, tone = "normal", testId }: Props) {
  return (
    <div className={`tile tile-${tone}`} data-testid={testId}>
      <div className="tile-label">{label}</div>
      <div className="tile-value" aria-live="polite">
        {value}
      </div>
      {hint ? <div className="tile-hint">{hint}</div> : null}
    </div>
  );
}
