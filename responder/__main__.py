from responder.ops.cli import main

raise SystemExit(main())
