from responder.launch import main

raise SystemExit(main())
