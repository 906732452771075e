/**
 * Client-side routing: `#/` (files: add, pin, download; `#/pin/{id}` shows pin request `id` on
 * it), `#/perpetual`, `#/dao`, `#/providers` and `#/operator`. Each
 * page is a `[data-page]` element; the router shows the one the address names, marks its link
 * in the `nav` as the current page, and tells the page it was entered (to load what it shows)
 * and the one before it that it was left (to stop polling).
 */
export type Route = 'files' | 'perpetual' | 'dao' | 'providers' | 'operator';

const ROUTES: Record<string, Route> = {
  '': 'files',
  '/': 'files',
  '/perpetual': 'perpetual',
  '/dao': 'dao',
  '/providers': 'providers',
  '/operator': 'operator',
};

/** The page the address names (`files` for any other; a pin's address, `#/pin/{id}`, is on it). */
export function currentRoute(): Route {
  return ROUTES[location.hash.replace(/^#/, '')] ?? 'files';
}

/** The pin request the address names (`#/pin/{id}`), if it does. */
export function pinOfAddress(): bigint | undefined {
  const m = /^#\/pin\/(\d{1,78})$/.exec(location.hash);
  return m ? BigInt(m[1]!) : undefined;
}

/** Shows the page the address names now and after every change of it. */
export function startRouter(onChange: (entered: Route, left: Route | undefined) => void): void {
  let shown: Route | undefined;
  const show = () => {
    const route = currentRoute();
    for (const page of document.querySelectorAll<HTMLElement>('[data-page]')) page.hidden = page.dataset.page !== route;
    for (const link of document.querySelectorAll<HTMLAnchorElement>('nav a[data-route]')) {
      if (link.dataset.route === route) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    if (route === shown) return;
    const left = shown;
    shown = route;
    onChange(route, left);
  };
  window.addEventListener('hashchange', show);
  show();
}
