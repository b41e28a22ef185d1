import SwiftUI

struct ContentView: View {
    @StateObject private var player = AvatarPlayer()

    var body: some View {
        VStack(spacing: 12) {
            if let image = player.image {
                Image(uiImage: image).resizable().scaledToFit()
            } else {
                Spacer()
            }
            Text(player.status)
                .font(.system(size: 13, design: .monospaced))
                .foregroundColor(.white)
                .frame(maxWidth: .infinity, alignment: .leading)
            HStack {
                Button(player.playing ? "Stop" : "Play") { player.toggle() }
                    .buttonStyle(.borderedProminent)
                Button("Microphone") { player.listen() }
                    .buttonStyle(.bordered)
                    .disabled(!player.canListen || player.playing)
            }
        }
        .padding()
        .background(Color.black.ignoresSafeArea())
        .onAppear { player.load() }
    }
}
