"""The API's routes, one module per area. Each route is a plain function of the module, so it
can be imported and called on its own; each module's `router()` registers them."""
