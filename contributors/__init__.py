"""The partner side of ctdhub: the record schema, its validation and the partner toolkit."""
