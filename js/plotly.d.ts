// The part of plotly.js this widget uses (the dist bundle ships no types).
declare module "plotly.js-gl2d-dist-min" {
  export interface PlotlyHTMLElement extends HTMLDivElement {
    on(event: string, handler: (data: any) => void): void;
    removeAllListeners?(event: string): void;
    _fullLayout?: any;
    layout?: Record<string, unknown>; // the layout plotly draws from (its own copy)
  }
  const Plotly: {
    newPlot(el: HTMLElement, data: object[], layout?: object, config?: object): Promise<PlotlyHTMLElement>;
    react(el: HTMLElement, data: object[], layout?: object, config?: object): Promise<PlotlyHTMLElement>;
    restyle(el: HTMLElement, update: object, traces?: number[]): Promise<PlotlyHTMLElement>;
    relayout(el: HTMLElement, update: object): Promise<PlotlyHTMLElement>;
    extendTraces(el: HTMLElement, update: object, traces: number[]): Promise<PlotlyHTMLElement>;
    purge(el: HTMLElement): void;
    Plots: { resize(el: HTMLElement): Promise<void> };
  };
  export default Plotly;
}
