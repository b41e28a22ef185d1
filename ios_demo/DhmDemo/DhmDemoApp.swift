import SwiftUI

@main
struct DhmDemoApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
