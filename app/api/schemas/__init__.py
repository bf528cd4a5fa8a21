"""The API's request and response bodies, a module per resource."""
