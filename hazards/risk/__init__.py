"""Enterprise risk rating (企业风险分级, issue 13): the four-colour board of the console and the API.

    model     the versioned rating file (rating.yaml): schema and load-time validation (SourceError)
    evaluate  pure: an enterprise's inputs + the model -> level and every reason that fired
    store     SQL: the inputs of every enterprise in scope (one statement + core.availability)

Dependencies: stdlib, third-party, `core`, `hazards` (never `api`).
"""
